"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it:
with several replicas of one shard, exactly one operates; the others wait on the Lease.

- A replica acquires the Lease when it is free, released, or not renewed for ``leaseDurationSeconds``
  *as seen by this replica's own clock* (the time it last saw the record change, never the holder's
  timestamps: clocks of two nodes need not agree). Every write carries the resourceVersion it read, so
  two candidates cannot both win.
- The leader renews every ``retry_period``. If it cannot renew for ``renew_deadline`` (shorter than
  the lease duration), it stops at once (the process exits, the pod is restarted as a standby): a
  partitioned leader is gone before another replica may take over, so no mapping is synced by two
  processes at once.
- On a graceful shutdown the leader releases the Lease, and a standby takes over on its next try.

kopf's own peering is not used: it pauses lower-priority operators when it notices a peer, which leaves
a window in which two operators run handlers, and it needs its own cluster-scoped CRD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("httpsync.leader")


def micro_time(ts: float | None = None) -> str:
    """A Kubernetes MicroTime (always with six fraction digits, which the API server requires)."""
    return _micro(datetime.fromtimestamp(time.time() if ts is None else ts, UTC))


def default_identity() -> str:
    """The pod's name (HOSTNAME) and a random suffix: a restarted pod is a new candidate."""
    return f"{os.environ.get('HOSTNAME') or 'httpsync'}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")

    @classmethod
    def for_duration(cls, name: str, namespace: str, identity: str, lease_duration: float) -> LeaseSettings:
        """client-go's proportions (15 s / 10 s / 2 s), scaled to ``lease_duration``."""
        return cls(name, namespace, identity, lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, settings: LeaseSettings) -> None:
        self.api = api
        self.s = settings
        self._seen: tuple[str | None, str | None] | None = None  # (holder, renewTime) last read
        self._seen_at = 0.0  # monotonic time it was first read
        self.is_leader = False

    # ------------------------------------------------------------------ one attempt

    async def try_acquire_or_renew(self) -> bool:
        """One read-and-write of the Lease; True when this replica holds it afterwards."""
        now = time.time()
        try:
            lease = await self.api.read_namespaced_lease(
                self.s.name, self.s.namespace, _request_timeout=self.s.retry_period * 2
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return await self._create(now)
        spec = lease.spec
        holder = spec.holder_identity if spec is not None else None
        renewed = spec.renew_time.isoformat() if spec is not None and spec.renew_time else None
        record = (holder, renewed)
        if record != self._seen:
            self._seen, self._seen_at = record, time.monotonic()
        ours = holder == self.s.identity
        duration = float(spec.lease_duration_seconds or self.s.lease_duration) if spec is not None else 0.0
        if holder and not ours and time.monotonic() - self._seen_at < duration:
            return False  # held by another replica and renewed within its duration, as we saw it
        transitions = int(spec.lease_transitions or 0) if spec is not None else 0
        body = self._body(
            now,
            acquired=micro_time(now) if not ours else _micro(spec.acquire_time) if spec.acquire_time else None,
            transitions=transitions if ours else transitions + 1,
            resource_version=lease.metadata.resource_version,
        )
        try:
            await self.api.replace_namespaced_lease(
                self.s.name, self.s.namespace, body, _request_timeout=self.s.retry_period * 2
            )
        except ApiException as e:
            if e.status == 409:  # another candidate wrote first
                return False
            raise
        if not ours:
            log.info("became the leader (Lease %s/%s, identity %s)", self.s.namespace, self.s.name, self.s.identity)
        return True

    async def _create(self, now: float) -> bool:
        try:
            await self.api.create_namespaced_lease(self.s.namespace, self._body(now, acquired=micro_time(now)))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        log.info("became the leader (Lease %s/%s created, identity %s)", self.s.namespace, self.s.name, self.s.identity)
        return True

    def _body(
        self, now: float, *, acquired: str | None, transitions: int = 0, resource_version: str | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.s.name, "namespace": self.s.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.s.identity,
                "leaseDurationSeconds": max(1, round(self.s.lease_duration)),
                "acquireTime": acquired,
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            },
        }

    # ------------------------------------------------------------------ the loops

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True), or until ``stop`` is set (False)."""
        logged = False
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    self.is_leader = True
                    return True
            except Exception as e:  # the API server is unreachable: keep trying
                log.warning("leader election: %s: %s", type(e).__name__, e)
            if not logged:
                log.info(
                    "standby: waiting for Lease %s/%s held by %s",
                    self.s.namespace, self.s.name, self._seen[0] if self._seen else "another replica",
                )  # fmt: skip
                logged = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.s.retry_period)
        return False

    async def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period; ``on_lost(why)`` when renewing failed for the renew deadline
        (or another replica holds the Lease). Runs until cancelled."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.s.retry_period)
            try:
                if await self.try_acquire_or_renew():
                    last_renewed = time.monotonic()
                    continue
                # Another replica holds it: it saw our Lease expire. Stop now.
                holder = self._seen[0] if self._seen else "another replica"
                self.is_leader = False
                on_lost(f"Lease {self.s.namespace}/{self.s.name} is now held by {holder}")
                return
            except Exception as e:
                why = f"cannot renew Lease {self.s.namespace}/{self.s.name}: {type(e).__name__}: {e}"
            if time.monotonic() - last_renewed >= self.s.renew_deadline:
                self.is_leader = False
                on_lost(why)
                return
            log.warning("leader election: %s (retrying)", why)

    async def release(self) -> None:
        """Give the Lease up (graceful shutdown): a standby takes over on its next try."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.api.read_namespaced_lease(self.s.name, self.s.namespace, _request_timeout=5)
            if lease.spec is None or lease.spec.holder_identity != self.s.identity:
                return
            body = self._body(time.time(), acquired=None, resource_version=lease.metadata.resource_version)
            body["spec"].update(
                holderIdentity=None, leaseDurationSeconds=1, leaseTransitions=lease.spec.lease_transitions
            )
            await self.api.replace_namespaced_lease(self.s.name, self.s.namespace, body, _request_timeout=5)
            log.info("released Lease %s/%s", self.s.namespace, self.s.name)
        except Exception as e:
            log.warning("could not release Lease %s/%s: %s: %s", self.s.namespace, self.s.name, type(e).__name__, e)


def _micro(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def serve_standby_health(port: int) -> asyncio.AbstractServer:
    """``/healthz`` answers 200 while a standby waits (kopf serves it once this replica leads), so the
    liveness probe does not restart a healthy standby."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = b'{"standby": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "0.0.0.0", port, reuse_address=True)
