"""The per-source loop: timing, suspend, on-demand wake-ups. It decides *when*; the
:class:`~httpsync.controller.reconcile.Reconciler` decides *what*.

The loop reads its source through ``latest()`` (the handler parses kopf's live body into a
:class:`SourceObject` on each call) and its mappings through ``mappings_of(key)``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from httpsync.controller import events
from httpsync.controller.metrics import UNSHARDED, Metrics
from httpsync.controller.objects import MappingObject, SourceObject
from httpsync.controller.patch import StatusWriter
from httpsync.controller.reconcile import Reconciler
from httpsync.controller.summarize import (
    SUSPENDED_MESSAGE,
    mapping_suspended,
    source_first_contact,
    source_suspended,
)
from httpsync.http.redact import redact

log = logging.getLogger("httpsync.controller")
Key = tuple[str, str]
Seen = tuple[int, str | None]  # (generation, requested-at) of an object when its last sync started


class Stopped(Protocol):
    def __bool__(self) -> bool: ...

    async def wait(self) -> object: ...


@dataclass
class SourceLoop:
    key: Key
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_due: float = 0.0
    # So that the watch events caused by our own status patches do not trigger another sync.
    started_source: Seen | None = None
    started_mappings: dict[str, Seen] = field(default_factory=dict)
    mappings: int = 0  # at its last sync (for the objects-per-shard gauge)


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        writer: StatusWriter,
        *,
        settle: float = 2.0,
        backoff: float = 5.0,
        max_backoff: float = 300.0,
        max_syncs: int = 8,
        metrics: Metrics | None = None,
        shard: str | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.writer = writer
        # Source syncs at once across the operator; due loops queue for a slot in the order they became
        # due, so a slow or huge source holds one slot and never the others' schedules.
        self.slots = asyncio.Semaphore(max_syncs)
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.metrics.sync_slots.set(max_syncs)
        label = shard or UNSHARDED
        self._sources_gauge = self.metrics.shard_objects.labels(label, "HttpSource")
        self._mappings_gauge = self.metrics.shard_objects.labels(label, "HttpEndpointMapping")
        self.settle = settle  # a new source waits this long for its mappings' watch events
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.loops: dict[Key, SourceLoop] = {}

    # ------------------------------------------------------------------ wake-ups

    def source_changed(self, source: SourceObject) -> None:
        """A watch event of a source: wake its loop for a new generation or reconcile request."""
        loop = self.loops.get(source.key)
        if loop is not None and source.pending and loop.started_source != _seen(source):
            loop.wake.set()

    def mapping_changed(self, mapping: MappingObject) -> None:
        loop = self.loops.get((mapping.namespace, mapping.source_name))
        if loop is None or not mapping.pending:
            return
        if loop.started_mappings.get(mapping.name) != _seen(mapping):
            loop.wake.set()

    # ------------------------------------------------------------------ the loop

    async def run(
        self,
        latest: Callable[[], SourceObject],
        mappings_of: Callable[[Key], list[MappingObject]],
        stopped: Stopped,
    ) -> None:
        source = latest()
        loop = SourceLoop(source.key)
        self.loops[source.key] = loop
        self._sources_gauge.set(len(self.loops))
        failures = 0  # consecutive failures to talk to the API server
        try:
            loop.next_due = source.due_at()
            if loop.next_due <= time.time() and not source.suspended:
                await self._guarded(self.writer.source(source.meta, source_first_contact(source)), source)
                # A source applied together with its mappings: let their watch events arrive first.
                if source.status.observed_generation is None and self.settle > 0:
                    await _sleep(stopped, self.settle)
            while not stopped:
                source = latest()
                if source.suspended:
                    await self._guarded(self._suspend(source, mappings_of(source.key)), source)
                    await _wait(loop, stopped, None)
                    loop.next_due = 0.0  # resumed (or still suspended): sync as soon as it is allowed
                    continue
                timeout = max(0.0, loop.next_due - time.time())
                if timeout > 0:
                    await _wait(loop, stopped, timeout)
                    if stopped:
                        break
                    if latest().suspended:
                        continue
                queued_at = time.time()
                due_at = loop.next_due if 0 < loop.next_due <= queued_at + 0.5 else None  # None: on demand
                async with self.slots:
                    if stopped:
                        break
                    source = latest()  # woken (a new generation or request) or due: sync, unless suspended
                    if source.suspended:
                        continue
                    mappings = mappings_of(source.key)
                    self._mappings_gauge.inc(len(mappings) - loop.mappings)
                    loop.mappings = len(mappings)
                    loop.started_source = _seen(source)
                    loop.started_mappings = {m.name: _seen(m) for m in mappings}
                    # This sync handles whatever woke the loop so far (the first-contact patches' own watch
                    # events, a change seen while settling): only a wake-up from now on means another sync.
                    loop.wake.clear()
                    if due_at is not None:
                        self.metrics.drift(*source.key, time.time() - due_at)
                    with self.metrics.sync_slot(queued_at=queued_at, due_at=due_at):
                        ok = await self._guarded(self._sync(source, mappings, loop, stopped), source)
                if ok:
                    failures = 0
                else:  # the API server failed us: retry inside the loop, with backoff
                    failures += 1
                    # Jittered (half to all of the step), so loops failed by one API-server outage do not
                    # come back in the same second; a sync that succeeds returns to the source's own slot.
                    step = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
                    loop.next_due = time.time() + step * random.uniform(0.5, 1.0)
        finally:
            self.loops.pop(source.key, None)
            self._sources_gauge.set(len(self.loops))
            self._mappings_gauge.dec(loop.mappings)
            self.metrics.forget_source(*source.key)

    async def _sync(
        self, source: SourceObject, mappings: list[MappingObject], loop: SourceLoop, stopped: Stopped
    ) -> None:
        """One reconcile; if the loop is told to stop meanwhile (the source is deleted, the operator
        shuts down), the mapping syncs under way end at their next batch boundary."""
        planned: list[float] = []

        def schedule(interval: float) -> float:
            planned.append(next_slot(time.time(), interval, phase_of(source.meta.uid, interval)))
            return planned[-1]

        task = asyncio.ensure_future(self.reconciler.reconcile(source, mappings, schedule=schedule))
        stop = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                self.reconciler.stop_source(source.key)
            interval = await task
        finally:
            stop.cancel()
        # The reconcile wrote the next sync's time with its outcome; use the same time.
        loop.next_due = planned[-1] if planned else schedule(interval)

    async def _guarded(self, step: Awaitable[object], source: SourceObject) -> bool:
        """Run a step that talks to the API server; an error is logged (and retried by the caller),
        never the end of the loop."""
        try:
            await step
            return True
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("source %s/%s: %s (will retry)", *source.key, redact(f"{type(e).__name__}: {e}"))
            return False

    async def _suspend(self, source: SourceObject, mappings: list[MappingObject]) -> None:
        """Say Suspended on the source and on each of its mappings that does not say so yet (also
        after a restart, or for a mapping created while the source was suspended)."""
        self.metrics.forget_source(*source.key)  # a suspended source is neither late nor failing
        for mapping in mappings:
            self.metrics.forget_interval(mapping.namespace, mapping.name)
            await self.writer.mapping(mapping.meta, mapping_suspended(mapping, source.meta.name))
        status = source_suspended(source)
        if status is not None:
            await self.writer.source(source.meta, status)
            events.normal(source.body, "Suspended", SUSPENDED_MESSAGE)


def phase_of(uid: str, interval: float) -> float:
    """A source's stable place in its interval (from its uid): sources spread over the interval and
    stay spread, whatever bunched them up (a restart, an API-server outage)."""
    return (zlib.crc32(uid.encode()) / 2**32) * interval


def next_slot(now: float, interval: float, phase: float) -> float:
    """The first time ``phase + k * interval`` at least half an interval from now: a sync every
    interval, on the source's own phase (the first one after a change may come a little earlier)."""
    k = math.ceil((now + interval / 2 - phase) / interval)
    return phase + k * interval


def _seen(obj: SourceObject | MappingObject) -> Seen:
    return (obj.meta.generation, obj.meta.requested_at)


async def _sleep(stopped: Stopped, seconds: float) -> None:
    """Wait ``seconds`` (or until stopped), whatever wakes the loop meanwhile."""
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({stop}, timeout=seconds)
    finally:
        stop.cancel()


async def _wait(loop: SourceLoop, stopped: Stopped, timeout: float | None) -> None:
    wake = asyncio.ensure_future(loop.wake.wait())
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({wake, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (wake, stop):
            t.cancel()
        loop.wake.clear()
