"""One sync of one endpoint mapping: fetch -> map -> diff -> push, in batches, then delete.

Each page is mapped as it arrives; its entities are gathered into a batch of about
:data:`FLUSH_ENTITIES`, which is diffed against the state (unchanged entities are not pushed again),
pushed to the sink, and what the sink accepted is committed to the state. Memory is bounded by a
batch plus one page.

Stale entities (owned before, not seen now) are deleted only after a fully successful fetch, and
only if they are not too many: more than ``deletionGuard.maxDeletePercent`` of the mapping's
entities deletes nothing and says so (``DeletionBlocked``). A failed sync (any error, at any page)
deletes nothing and keeps what it pushed so far: the entities of the pages fetched before the
failure are still pushed, as if each page had been pushed on its own. Per-item mapping errors do
not fail a sync.

Every sync has an id (``sync_id``), given to each push and delete; after a successful sync whose
deletions were not blocked, the sink hears :meth:`~httpsync.engine.ports.Sink.sync_completed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from httpsync.api.models import (
    MAX_ERROR_SAMPLES,
    DeletionGuardSpec,
    EndpointResult,
    HttpEndpointMappingSpec,
    PaginationSpec,
)
from httpsync.engine import jsoncodec
from httpsync.engine.drift import open_state
from httpsync.engine.fetch import FetchCounters, iter_pages
from httpsync.engine.mapping import Mapper, PageResult
from httpsync.engine.ports import MappingState, Sink, StateStore
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import EngineError
from httpsync.http.redact import redact

log = logging.getLogger("httpsync.sync")

DELETE_BATCH = 500
MAX_SAMPLE_CHARS = 500
MAX_MESSAGE_CHARS = 2000  # the status keeps 4096 at most
# Pages up to this size with a pure-Python mapping are mapped inline; anything else in a thread,
# so the event loop (other syncs, the operator's watches) keeps running.
INLINE_ITEMS = 2000
# Entities are diffed, pushed and committed about this many at a time, pages gathered: each batch
# costs two round trips to the state's SQLite thread and two transactions, so small pages (a nested
# endpoint's children) must not pay them each. The batch holds at most this many plus one page.
FLUSH_ENTITIES = 1000
PREVIEW_MAX_ERRORS = 1000


def _shorten(message: str, limit: int) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _sample(message: str) -> str:
    return _shorten(redact(message), MAX_SAMPLE_CHARS)


async def map_items(mapper: Mapper, items: list[Any]) -> PageResult:
    if mapper.fast_path and len(items) <= INLINE_ITEMS:
        return _bounded(mapper.map_page(items))
    return _bounded(await asyncio.to_thread(mapper.map_page, items))


def _bounded(page: PageResult) -> PageResult:
    """The page without the entities holding a value nested more than
    :data:`~httpsync.engine.jsoncodec.MAX_VALUE_DEPTH` levels (each a mapping error naming the field):
    every sink, and the change-detection hash, encodes every entity. Only an array or object holding
    arrays or objects is looked at further."""
    deep = [k for k, e in enumerate(page.entities) if _may_be_deep(e)]
    if not deep:
        return page
    dropped: set[int] = set()
    for k in deep:
        e = page.entities[k]
        field = _deep_field(e)
        if field is not None:
            dropped.add(k)
            page.errors.append(
                f"mappings.{field}: the value is nested more than {jsoncodec.MAX_VALUE_DEPTH} levels deep "
                f"(entity {e['blueprint']}/{e['identifier']})"
            )
    if dropped:
        page.entities = [e for k, e in enumerate(page.entities) if k not in dropped]
    return page


def _may_be_deep(e: Entity) -> bool:
    nested = jsoncodec.nested_containers
    for value in e["properties"].values():
        t = type(value)
        if (t is dict or t is list) and nested(value):
            return True
    for value in e["relations"].values():
        t = type(value)
        if (t is dict or t is list) and nested(value):
            return True
    for value in (e["title"], e["team"], e["icon"]):
        t = type(value)
        if t is dict or t is list:
            return True
    return False


def _deep_field(e: Entity) -> str | None:
    """The field of ``e`` holding a value nested too deeply, if any."""
    for group in ("properties", "relations"):
        for name, value in e.get(group, {}).items():
            if jsoncodec.too_deep(value):
                return f"{group}.{name}"
    for name in ("title", "team", "icon"):
        if jsoncodec.too_deep(e.get(name)):
            return name
    return None


def _percent(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}".rstrip("0").rstrip(".") + "%"


def deletion_blocked_message(stale: int, known: int, max_percent: int) -> str:
    return (
        f"Deletion blocked: this sync would delete {stale} of the {known} entities of this mapping "
        f"({_percent(stale, known)}), more than spec.deletionGuard.maxDeletePercent ({max_percent}%), "
        "so nothing was deleted. If the API really dropped them, set spec.deletionGuard.disabled: true "
        "or raise spec.deletionGuard.maxDeletePercent, and sync again."
    )


async def sync_mapping(
    client: Any,
    mapping_name: str,
    mapping: HttpEndpointMappingSpec,
    pagination: PaginationSpec,
    sink: Sink,
    state: StateStore,
    *,
    owner: str,
    mapper: Mapper | None = None,
    stop: asyncio.Event | None = None,
) -> EndpointResult:
    """Sync one mapping once. Never raises for sync failures: the result says ``Failed`` with the
    error's reason, message and whether a human must act (``stalled``). ``mapper`` may be given to
    reuse a compiled one.

    ``stop`` ends the sync at the next batch boundary (the mapping is being deleted): the batch being
    pushed is pushed and committed, nothing after it is written (not even the pages already fetched),
    nothing is deleted, and the result fails with reason ``Stopped``. The sink and the state then
    agree, so whoever stopped it can remove exactly what the state says was pushed."""
    result = EndpointResult(mapping=mapping_name, kind=mapping.kind)
    counters = FetchCounters()
    mstate: MappingState | None = None
    try:
        mapper = mapper or Mapper.from_spec(mapping)
        mstate, known = await open_state(sink, state, owner, mapping)
        push = _Pusher(sink, mstate, owner, uuid.uuid4().hex, result)
        batch = _Batch()
        try:
            async with contextlib.aclosing(iter_pages(client, mapping, pagination, counters)) as pages:
                async for items in pages:
                    _check(stop)
                    page = items if type(items) is PageResult else await map_items(mapper, items)
                    _count_page(page, result)
                    batch.add(page.entities)
                    if len(batch) >= FLUSH_ENTITIES:
                        _check(stop)
                        await push.flush(batch)
        except SyncStopped:
            raise
        except Exception:
            # The pages fetched before the failure are pushed anyway, as they were page by page.
            # (A failed push empties the batch first: nothing is pushed twice.)
            if len(batch) and not (stop is not None and stop.is_set()):
                try:
                    await push.flush(batch)
                except Exception:
                    log.warning("mapping %s: pushing what was fetched before the failure failed", owner, exc_info=True)
            raise
        _check(stop)
        await push.flush(batch)
        _check(stop)
        await push.delete_stale(mapping.deletion_guard, known)
        if result.deletion_blocked is None:
            await push.completed()
    except EngineError as e:
        result.fail(e.reason, _shorten(redact(e.message), MAX_MESSAGE_CHARS), stalled=e.stalled)
    except Exception as e:
        log.exception("mapping %s: unexpected error", owner)
        message = _shorten(redact(f"unexpected error: {type(e).__name__}: {e}"), MAX_MESSAGE_CHARS)
        result.fail("InternalError", message)
    finally:
        result.requests = counters.requests
        result.pages = counters.pages
        result.items_fetched = counters.items_fetched
        if mstate is not None:
            with contextlib.suppress(Exception):
                await mstate.close()
    return result.finish()


class SyncStopped(EngineError):
    """The sync was asked to stop (its mapping is being deleted)."""

    def __init__(self) -> None:
        super().__init__("the sync was stopped: the mapping is being deleted", reason="Stopped", stalled=False)


def _check(stop: asyncio.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise SyncStopped()


class _Batch:
    """Mapped entities waiting to be diffed, pushed and committed together (a duplicate, in the
    batch or across batches, is the state's to find: the first one wins)."""

    __slots__ = ("entities",)

    def __init__(self) -> None:
        self.entities: list[Entity] = []

    def __len__(self) -> int:
        return len(self.entities)

    def add(self, entities: list[Entity]) -> None:
        self.entities += entities

    def take(self) -> list[Entity]:
        entities = self.entities
        self.entities = []
        return entities


def _count_page(page: PageResult, result: EndpointResult) -> None:
    result.items_filtered += page.filtered
    errors = result.mapping_errors
    room = MAX_ERROR_SAMPLES - len(errors.samples)
    errors.samples += [_sample(m) for m in page.errors[: max(0, room)]]
    errors.count += len(page.errors)


class _Pusher:
    """The sink side of one sync: pushes, deletions and their commits, under one sync id."""

    __slots__ = ("mstate", "owner", "result", "sink", "sync_id")

    def __init__(self, sink: Sink, mstate: MappingState, owner: str, sync_id: str, result: EndpointResult) -> None:
        self.sink = sink
        self.mstate = mstate
        self.owner = owner
        self.sync_id = sync_id
        self.result = result

    async def flush(self, batch: _Batch) -> None:
        """Diff, push and commit the batch (emptied first)."""
        entities = batch.take()
        if not entities:
            return
        result = self.result
        to_push, unchanged = await self.mstate.diff(entities)
        duplicates = self.mstate.take_duplicates()
        result.entities += len(entities) - len(duplicates)
        if duplicates:
            self._record_duplicates(duplicates)
        conflicts = self.mstate.take_conflicts()
        if conflicts:
            self._record_conflicts(conflicts)
        result.entities_unchanged += unchanged
        if not to_push:
            return
        report = await self.sink.upsert(self.owner, to_push, sync_id=self.sync_id)
        failed = self._record_failures(report.failed)
        if report.invalid:
            failed |= self._record_invalid(report.invalid)
        accepted = [e for e in to_push if (e["blueprint"], e["identifier"]) not in failed] if failed else to_push
        result.entities_upserted += len(accepted)
        await self.mstate.commit(accepted, [])

    async def delete_stale(self, guard: DeletionGuardSpec, known: int) -> None:
        """Delete what was owned before and not seen now, unless the deletion guard holds it back."""
        result = self.result
        stale = await self.mstate.stale_count()
        if stale and await self.mstate.release_shared():  # another mapping still produces those: kept
            stale = await self.mstate.stale_count()
        if stale == 0:
            return
        if not guard.disabled and known > 0 and stale * 100 > guard.max_delete_percent * known:
            message = deletion_blocked_message(stale, known, guard.max_delete_percent)
            result.deletion_blocked = message
            result.reason = "DeletionBlocked"
            result.message = message
            return
        async for batch in self.mstate.stale_batches(DELETE_BATCH):
            report = await self.sink.delete(self.owner, batch, sync_id=self.sync_id)
            failed = self._record_failures(report.failed)
            deleted = [r for r in batch if (r[0], r[1]) not in failed] if failed else batch
            result.entities_deleted += len(deleted)
            await self.mstate.commit([], deleted)

    async def completed(self) -> None:
        """Tell the sink the sync is complete: what the mapping owns now, and whether this sync sent
        all of it (nothing was skipped as unchanged)."""
        r = self.result
        owned = r.entities_owned
        await self.sink.sync_completed(self.owner, self.sync_id, entities=owned, full=r.entities_unchanged == 0)

    def _record_invalid(self, invalid: Sequence[tuple[EntityRef, str]]) -> set[tuple[str, str]]:
        """Entities the sink would not send (they cannot be valid there): mapping errors."""
        errors = self.result.mapping_errors
        room = MAX_ERROR_SAMPLES - len(errors.samples)
        errors.samples += [_sample(f"{ref[0]}/{ref[1]}: {message}") for ref, message in invalid[: max(0, room)]]
        errors.count += len(invalid)
        return {(ref[0], ref[1]) for ref, _ in invalid}

    def _record_duplicates(self, duplicates: list[EntityRef]) -> None:
        """Duplicates count as mapping errors too (an item was skipped), with a sample each."""
        result = self.result
        result.entities_duplicate += len(duplicates)
        errors = result.mapping_errors
        errors.count += len(duplicates)
        for b, i in duplicates[: max(0, MAX_ERROR_SAMPLES - len(errors.samples))]:
            errors.samples.append(
                _sample(f"mappings.identifier: {b}/{i} is produced by more than one item; the first one is kept")
            )

    def _record_conflicts(self, conflicts: list[tuple[EntityRef, str]]) -> None:
        """Entities another mapping produces too: counted, and mapping errors naming the other one."""
        result = self.result
        result.entities_conflicting += len(conflicts)
        errors = result.mapping_errors
        errors.count += len(conflicts)
        for (b, i), other in conflicts[: max(0, MAX_ERROR_SAMPLES - len(errors.samples))]:
            errors.samples.append(
                _sample(
                    f"mappings.identifier: {b}/{i} is also produced by {other}; the sink keeps the one written "
                    "last, and deletes it only when neither produces it"
                )
            )

    def _record_failures(self, failures: Sequence[tuple[EntityRef, str]]) -> set[tuple[str, str]]:
        result = self.result
        refs = set()
        for ref, message in failures:
            refs.add((ref[0], ref[1]))
            if len(result.sink_error_samples) < MAX_ERROR_SAMPLES:
                result.sink_error_samples.append(_sample(f"{ref[0]}/{ref[1]}: {message}"))
        result.entities_failed += len(refs)
        return refs


# --------------------------------------------------------------------------- preview


def failed_result(mapping_name: str, kind: str, error: EngineError) -> EndpointResult:
    """The result of a mapping that could not run (its source failed before it)."""
    result = EndpointResult(mapping=mapping_name, kind=kind)
    return result.fail(error.reason, error.message, stalled=error.stalled).finish()


# The preview's JSON: the result's, up to the counters of what was fetched.
_PREVIEW_KEYS = (
    "mapping", "kind", "outcome", "reason", "message", "requests", "pages", "itemsFetched", "itemsFiltered",
)  # fmt: skip


@dataclass(slots=True)
class PreviewResult:
    """What ``httpsync preview`` shows for one mapping: the outcome and counters (``result``), the
    mapped entities (up to the limit) and every per-item error met on the way."""

    result: EndpointResult
    entities: list[Entity] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc = self.result.to_json()
        return {**{k: doc[k] for k in _PREVIEW_KEYS}, "entities": self.entities, "errors": self.errors}


async def preview_mapping(
    client: Any,
    mapping_name: str,
    mapping: HttpEndpointMappingSpec,
    pagination: PaginationSpec,
    *,
    limit: int = 10,
) -> PreviewResult:
    """Fetch pages until ``limit`` entities are mapped (or the endpoint ends); write nothing."""
    preview = PreviewResult(EndpointResult(mapping=mapping_name, kind=mapping.kind))
    result = preview.result
    counters = FetchCounters()
    try:
        mapper = Mapper.from_spec(mapping)
        async with contextlib.aclosing(iter_pages(client, mapping, pagination, counters)) as pages:
            async for items in pages:
                page = items if type(items) is PageResult else await map_items(mapper, items)
                _count_page(page, result)
                result.entities += len(page.entities)
                room = PREVIEW_MAX_ERRORS - len(preview.errors)
                preview.errors += [_sample(m) for m in page.errors[:room]]
                preview.entities += page.entities[: max(0, limit - len(preview.entities))]
                if len(preview.entities) >= limit:
                    break
    except EngineError as e:
        result.fail(e.reason, redact(e.message), stalled=e.stalled)
    except Exception as e:
        log.exception("preview of %s: unexpected error", mapping_name)
        result.fail("InternalError", redact(f"unexpected error: {type(e).__name__}: {e}"))
    finally:
        result.requests = counters.requests
        result.pages = counters.pages
        result.items_fetched = counters.items_fetched
    result.finish()
    return preview
