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

from httpsync.api.models import EndpointResult, HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import ParentCache
from httpsync.engine.mapping import Mapper
from httpsync.engine.ports import Sink, StateStore
from httpsync.engine.sync import failed_result, sync_mapping
from httpsync.engine.types import SecretResolver
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
) -> list[R]:
    """``work(client, mapping)`` for every mapping, in the mappings' order, with one client for the source.

    ``concurrency`` bounds the mappings running at once: a number for this source alone, or a
    semaphore shared with other sources. ``check_url`` (the destination policy) and ``on_response``
    (metrics) go to :meth:`SourceClient.create`. Nothing raises: a source that cannot be reached
    gives ``failed(mapping, error)`` for each mapping, and so does a mapping whose work raised.
    No mapping, no client. Mappings with a ``spec`` (an :class:`HttpEndpointMappingSpec`) share the
    pages of the path parameter endpoints they have in common, fetched once for this run.
    """
    if not mappings:
        return []
    if isinstance(concurrency, int) and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    limit = asyncio.Semaphore(concurrency) if isinstance(concurrency, int) else concurrency
    try:
        client = await SourceClient.create(source, secrets, check_url=check_url, on_response=on_response)
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
    )
