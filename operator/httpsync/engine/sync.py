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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from httpsync.api.models import HttpEndpointMappingSpec, PaginationSpec
from httpsync.engine.fetch import FetchCounters, iter_pages
from httpsync.engine.mapping import Mapper, PageResult
from httpsync.engine.types import MAX_ERROR_SAMPLES, EndpointResult, Entity, EntityRef
from httpsync.errors import EngineError
from httpsync.http.redact import redact
from httpsync.sinks.base import MappingState, Sink, StateStore

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


def _shorten(message: str, limit: int) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _sample(message: str) -> str:
    return _shorten(redact(message), MAX_SAMPLE_CHARS)


async def map_items(mapper: Mapper, items: list[Any]) -> PageResult:
    if mapper.fast_path and len(items) <= INLINE_ITEMS:
        return mapper.map_page(items)
    return await asyncio.to_thread(mapper.map_page, items)


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
) -> EndpointResult:
    """Sync one mapping once. Never raises for sync failures: the result says ``Failed`` with the
    error's reason, message and whether a human must act (``stalled``). ``mapper`` may be given to
    reuse a compiled one."""
    result = EndpointResult(mapping=mapping_name, kind=mapping.kind)
    counters = FetchCounters()
    mstate: MappingState | None = None
    try:
        mapper = mapper or Mapper.from_spec(mapping)
        mstate = await state.open(owner)
        known = await mstate.known_count()
        batch = _Batch()
        try:
            async with contextlib.aclosing(iter_pages(client, mapping, pagination, counters)) as pages:
                async for items in pages:
                    page = await map_items(mapper, items)
                    _count_page(page, result)
                    if not batch.add(page.entities):
                        await _flush(batch, result, sink, mstate, owner)
                        batch.add(page.entities)
                    if len(batch) >= FLUSH_ENTITIES:
                        await _flush(batch, result, sink, mstate, owner)
        except Exception:
            # The pages fetched before the failure are pushed anyway, as they were page by page.
            # (A failed push empties the batch first: nothing is pushed twice.)
            if len(batch):
                try:
                    await _flush(batch, result, sink, mstate, owner)
                except Exception:
                    log.warning("mapping %s: pushing what was fetched before the failure failed", owner, exc_info=True)
            raise
        await _flush(batch, result, sink, mstate, owner)
        await _delete_stale(mapping, result, sink, mstate, owner, known)
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


class _Batch:
    """Mapped entities waiting to be diffed, pushed and committed together."""

    __slots__ = ("entities", "keys")

    def __init__(self) -> None:
        self.entities: list[Entity] = []
        self.keys: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.entities)

    def add(self, entities: list[Entity]) -> bool:
        """Add a page's entities, or nothing (False) when one of them is already waiting: the batch is
        flushed first, so an entity met again on a later page is diffed against what was committed
        for the first one, exactly as when each page was pushed on its own."""
        if not entities:
            return True
        keys = [(e["blueprint"], e["identifier"]) for e in entities]
        if self.entities and not self.keys.isdisjoint(keys):
            return False
        self.entities += entities
        self.keys.update(keys)
        return True

    def take(self) -> list[Entity]:
        entities = self.entities
        self.entities, self.keys = [], set()
        return entities


def _count_page(page: PageResult, result: EndpointResult) -> None:
    result.items_filtered += page.filtered
    room = MAX_ERROR_SAMPLES - len(result.mapping_error_samples)
    result.mapping_error_samples += [_sample(m) for m in page.errors[: max(0, room)]]
    result.mapping_error_count += len(page.errors)


async def _flush(batch: _Batch, result: EndpointResult, sink: Sink, mstate: MappingState, owner: str) -> None:
    """Diff, push and commit the batch (emptied first)."""
    entities = batch.take()
    if not entities:
        return
    result.entities += len(entities)
    to_push, unchanged = await mstate.diff(entities)
    result.entities_unchanged += unchanged
    if not to_push:
        return
    report = await sink.upsert(owner, to_push)
    failed = _record_failures(report.failed, result)
    accepted = [e for e in to_push if (e["blueprint"], e["identifier"]) not in failed] if failed else to_push
    result.entities_upserted += len(accepted)
    await mstate.commit(accepted, [])


def _record_failures(failures: Sequence[tuple[EntityRef, str]], result: EndpointResult) -> set[tuple[str, str]]:
    refs = set()
    for ref, message in failures:
        refs.add((ref[0], ref[1]))
        if len(result.sink_error_samples) < MAX_ERROR_SAMPLES:
            result.sink_error_samples.append(_sample(f"{ref[0]}/{ref[1]}: {message}"))
    result.entities_failed += len(refs)
    return refs


async def _stale_batches(mstate: MappingState) -> AsyncIterator[list[EntityRef]]:
    batches = getattr(mstate, "stale_batches", None)
    if batches is not None:  # bounded memory (SqliteMappingState)
        async for batch in batches(DELETE_BATCH):
            yield batch
        return
    stale = await mstate.stale()
    for i in range(0, len(stale), DELETE_BATCH):
        yield stale[i : i + DELETE_BATCH]


async def _stale_count(mstate: MappingState) -> int:
    count = getattr(mstate, "stale_count", None)
    if count is not None:
        return int(await count())
    return len(await mstate.stale())


async def _delete_stale(
    mapping: HttpEndpointMappingSpec,
    result: EndpointResult,
    sink: Sink,
    mstate: MappingState,
    owner: str,
    known: int,
) -> None:
    stale = await _stale_count(mstate)
    if stale == 0:
        return
    guard = mapping.deletion_guard
    if not guard.disabled and known > 0 and stale * 100 > guard.max_delete_percent * known:
        message = deletion_blocked_message(stale, known, guard.max_delete_percent)
        result.deletion_blocked = message
        result.reason = "DeletionBlocked"
        result.message = message
        return
    async for batch in _stale_batches(mstate):
        report = await sink.delete(owner, batch)
        failed = _record_failures(report.failed, result)
        deleted = [r for r in batch if (r[0], r[1]) not in failed] if failed else batch
        result.entities_deleted += len(deleted)
        await mstate.commit([], deleted)


# --------------------------------------------------------------------------- preview


@dataclass(slots=True)
class PreviewResult:
    """What ``httpsync preview`` shows for one mapping: mapped entities (up to the limit) and every
    per-item error met on the way, without writing anything."""

    mapping: str
    kind: str
    entities: list[Entity] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    items_fetched: int = 0
    items_filtered: int = 0
    requests: int = 0
    pages: int = 0
    outcome: str = "Succeeded"
    reason: str | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "requests": self.requests,
            "pages": self.pages,
            "itemsFetched": self.items_fetched,
            "itemsFiltered": self.items_filtered,
            "entities": self.entities,
            "errors": self.errors,
        }


async def preview_mapping(
    client: Any,
    mapping_name: str,
    mapping: HttpEndpointMappingSpec,
    pagination: PaginationSpec,
    *,
    limit: int = 10,
    max_errors: int = 1000,
) -> PreviewResult:
    """Fetch pages until ``limit`` entities are mapped (or the endpoint ends); write nothing."""
    result = PreviewResult(mapping=mapping_name, kind=mapping.kind)
    counters = FetchCounters()
    try:
        mapper = Mapper.from_spec(mapping)
        async with contextlib.aclosing(iter_pages(client, mapping, pagination, counters)) as pages:
            async for items in pages:
                page = await map_items(mapper, items)
                result.items_filtered += page.filtered
                room = max_errors - len(result.errors)
                result.errors += [_sample(m) for m in page.errors[:room]]
                result.entities += page.entities[: max(0, limit - len(result.entities))]
                if len(result.entities) >= limit:
                    break
    except EngineError as e:
        result.outcome, result.reason, result.message = "Failed", e.reason, redact(e.message)
    except Exception as e:
        log.exception("preview of %s: unexpected error", mapping_name)
        result.outcome, result.reason = "Failed", "InternalError"
        result.message = redact(f"unexpected error: {type(e).__name__}: {e}")
    finally:
        result.requests = counters.requests
        result.pages = counters.pages
        result.items_fetched = counters.items_fetched
    return result
