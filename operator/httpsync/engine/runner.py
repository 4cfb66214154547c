"""The mappings of one source, run over one HTTP client: what ``httpsync sync``, ``httpsync preview``
and the operator's reconcile of a source share.

:func:`run_source` builds the source's :class:`SourceClient` (reading its Secrets; the destination
policy, if given, is asked about the baseUrl before anything else), runs one piece of work per
mapping, concurrently under a limit, and turns a failure of the source itself (a missing Secret, a
denied destination) into a failed result for every mapping. Path parameter endpoints that several
of the mappings use are fetched once per run (:class:`~httpsync.engine.fetch.ParentCache`).
:func:`sync_source` is that with :func:`~httpsync.engine.sync.sync_mapping` as the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from httpsync.api.models import MAX_ERROR_SAMPLES, EndpointResult, HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.engine import workers
from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import ParentCache
from httpsync.engine.mapping import Mapper
from httpsync.engine.ports import Sink, StateStore
from httpsync.engine.sync import failed_result, sync_mapping
from httpsync.engine.types import SecretResolver
from httpsync.engine.workers import WorkerPool
from httpsync.errors import EngineError
from httpsync.http.redact import redact
from httpsync.http.retry import ServerWait
from httpsync.http.transport import TransportPool

log = logging.getLogger("httpsync.runner")

M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SourceMapping:
    """One mapping of a source to sync: its name, its owner key (``namespace/name``, whose entities
    these are in the sink and the state), its spec, and its compiled mapper if the caller has one."""

    name: str
    owner: str
    spec: HttpEndpointMappingSpec
    mapper: Mapper | None = None


async def run_source(
    source: HttpSourceSpec,
    mappings: Sequence[M],
    secrets: SecretResolver,
    work: Callable[[SourceClient, M], Awaitable[R]],
    failed: Callable[[M, EngineError], R],
    *,
    concurrency: int | asyncio.Semaphore,
    check_url: Callable[[str], None] | None = None,
    on_response: Callable[[int | None], None] | None = None,
    on_wait: Callable[[ServerWait], None] | None = None,
    pool: WorkerPool | None = None,
    transports: TransportPool | None = None,
) -> list[R]:
    """``work(client, mapping)`` for every mapping, in the mappings' order, with one client for the source.

    ``concurrency`` bounds the mappings running at once: a number for this source alone, or a
    semaphore shared with other sources. ``check_url`` (the destination policy), ``on_response``
    (metrics) and ``on_wait`` (a wait the API asked for) go to :meth:`SourceClient.create`. Pages
    are decoded and mapped in ``pool`` (default: the process's shared pool,
    :func:`httpsync.engine.workers.shared_pool`). Nothing raises: a source that cannot be reached
    gives ``failed(mapping, error)`` for each mapping, and so does a mapping whose work raised. No
    mapping, no client. Mappings with a ``spec`` (an :class:`HttpEndpointMappingSpec`) share the
    pages of the path parameter endpoints they have in common, fetched once for this run.
    """
    if not mappings:
        return []
    if isinstance(concurrency, int) and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    limit = asyncio.Semaphore(concurrency) if isinstance(concurrency, int) else concurrency
    try:
        client = await SourceClient.create(
            source, secrets, check_url=check_url, on_response=on_response, on_wait=on_wait, transports=transports
        )
        client.pool = pool if pool is not None else workers.shared_pool()
    except EngineError as e:
        return [failed(m, e) for m in mappings]
    except Exception as e:
        error = EngineError(redact(f"cannot create the HTTP client: {type(e).__name__}: {e}"))
        return [failed(m, error) for m in mappings]
    specs = [s for s in (getattr(m, "spec", None) for m in mappings) if isinstance(s, HttpEndpointMappingSpec)]
    client.parent_cache = ParentCache.for_mappings(specs, source.pagination)

    async def one(mapping: M) -> R:
        async with limit:
            try:
                return await work(client, mapping)
            except EngineError as e:
                return failed(mapping, e)
            except Exception as e:
                log.exception("unexpected error")
                return failed(mapping, EngineError(redact(f"unexpected error: {type(e).__name__}: {e}")))

    async with client:
        try:
            return list(await asyncio.gather(*(one(m) for m in mappings)))
        finally:
            if client.parent_cache is not None:
                await client.parent_cache.aclose()


def _failed(mapping: SourceMapping, error: EngineError) -> EndpointResult:
    return failed_result(mapping.name, mapping.spec.kind, error)


async def sync_source(
    source: HttpSourceSpec,
    mappings: Sequence[SourceMapping],
    secrets: SecretResolver,
    sink: Sink,
    state: StateStore,
    *,
    concurrency: int | asyncio.Semaphore,
    check_url: Callable[[str], None] | None = None,
    on_response: Callable[[int | None], None] | None = None,
    failed: Callable[[SourceMapping, EngineError], EndpointResult] = _failed,
    on_wait: Callable[[ServerWait], None] | None = None,
    pool: WorkerPool | None = None,
) -> list[EndpointResult]:
    """Sync every mapping of ``source`` once into ``sink`` (remembering in ``state``): one result per
    mapping, in order. A mapping's pagination replaces the source's. A failure of the source gives
    ``failed(mapping, error)`` for each mapping (by default a ``Failed`` result with the error's
    reason, message and stalled). See :func:`run_source` for the other arguments."""

    async def work(client: SourceClient, m: SourceMapping) -> EndpointResult:
        pagination = m.spec.pagination or source.pagination
        return await sync_mapping(client, m.name, m.spec, pagination, sink, state, owner=m.owner, mapper=m.mapper)

    results = await run_source(
        source,
        mappings,
        secrets,
        work,
        failed,
        concurrency=concurrency,
        check_url=check_url,
        on_response=on_response,
        on_wait=on_wait,
        pool=pool,
    )
    await retry_deferred(sink, state, [(m.owner, r) for m, r in zip(mappings, results, strict=True)])
    return results


async def retry_deferred(sink: Sink, state: StateStore, done: Sequence[tuple[str, EndpointResult]]) -> None:
    """After every mapping of a source has pushed: the sink sends once more what it deferred (an
    entity whose related entity, maybe from another mapping, did not exist yet: Port with
    ``createMissingRelatedEntities: false``), and each result and state learn what landed.
    ``done``: (owner, result) of each mapping of the source. A sink without the step does nothing."""
    retry = getattr(sink, "retry_deferred", None)
    if retry is None:
        return
    for owner, result in done:
        try:
            outcome = await retry(owner)
            if outcome is None:
                continue
            landed, report = outcome
            if landed:
                mstate = await state.open(owner)
                try:
                    await mstate.commit(landed, [])
                finally:
                    await mstate.close()
        except EngineError as e:
            log.warning("mapping %s: sending the deferred entities again failed: %s", owner, redact(e.message))
            continue
        keys = {f"{e['blueprint']}/{e['identifier']}: " for e in landed}
        result.entities_failed -= len(landed)
        result.entities_upserted += len(landed)
        result.sink_error_samples = [s for s in result.sink_error_samples if not s.startswith(tuple(keys))]
        room = MAX_ERROR_SAMPLES - len(result.sink_error_samples)
        again = [f"{ref.blueprint}/{ref.identifier}: {redact(message)}" for ref, message in report.failed]
        present = {s.split(": ", 1)[0] for s in result.sink_error_samples}
        result.sink_error_samples += [s for s in again if s.split(": ", 1)[0] not in present][: max(0, room)]
