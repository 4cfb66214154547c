"""The mappings of one source, run over one HTTP client: what ``httpsync sync``, ``httpsync preview``
and the operator's reconcile of a source share.

:func:`run_source` builds the source's :class:`SourceClient` (reading its Secrets; the destination
policy, if given, is asked about the baseUrl before anything else), runs one piece of work per
mapping, concurrently under a limit, and turns a failure of the source itself (a missing Secret, a
denied destination) into a failed result for every mapping. :func:`sync_source` is that with
:func:`~httpsync.engine.sync.sync_mapping` as the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from httpsync.api.models import EndpointResult, HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.engine import workers
from httpsync.engine.client import SourceClient
from httpsync.engine.mapping import Mapper
from httpsync.engine.ports import Sink, StateStore
from httpsync.engine.sync import failed_result, sync_mapping
from httpsync.engine.types import SecretResolver
from httpsync.engine.workers import WorkerPool
from httpsync.errors import EngineError
from httpsync.http.redact import redact

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
    pool: WorkerPool | None = None,
) -> list[R]:
    """``work(client, mapping)`` for every mapping, in the mappings' order, with one client for the source.

    ``concurrency`` bounds the mappings running at once: a number for this source alone, or a
    semaphore shared with other sources. ``check_url`` (the destination policy) and ``on_response``
    (metrics) go to :meth:`SourceClient.create`. Pages are decoded and mapped in ``pool`` (default:
    the process's shared pool, :func:`httpsync.engine.workers.shared_pool`). Nothing raises: a
    source that cannot be reached gives ``failed(mapping, error)`` for each mapping, and so does a
    mapping whose work raised. No mapping, no client.
    """
    if not mappings:
        return []
    if isinstance(concurrency, int) and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    limit = asyncio.Semaphore(concurrency) if isinstance(concurrency, int) else concurrency
    try:
        client = await SourceClient.create(source, secrets, check_url=check_url, on_response=on_response)
        client.pool = pool if pool is not None else workers.shared_pool()
    except EngineError as e:
        return [failed(m, e) for m in mappings]
    except Exception as e:
        error = EngineError(redact(f"cannot create the HTTP client: {type(e).__name__}: {e}"))
        return [failed(m, error) for m in mappings]

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
        return list(await asyncio.gather(*(one(m) for m in mappings)))


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
    pool: WorkerPool | None = None,
) -> list[EndpointResult]:
    """Sync every mapping of ``source`` once into ``sink`` (remembering in ``state``): one result per
    mapping, in order. A mapping's pagination replaces the source's. A failure of the source gives
    ``failed(mapping, error)`` for each mapping (by default a ``Failed`` result with the error's
    reason, message and stalled). See :func:`run_source` for the other arguments."""

    async def work(client: SourceClient, m: SourceMapping) -> EndpointResult:
        pagination = m.spec.pagination or source.pagination
        return await sync_mapping(client, m.name, m.spec, pagination, sink, state, owner=m.owner, mapper=m.mapper)

    return await run_source(
        source,
        mappings,
        secrets,
        work,
        failed,
        concurrency=concurrency,
        check_url=check_url,
        on_response=on_response,
        pool=pool,
    )
