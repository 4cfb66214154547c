"""Pages decoded and mapped in worker processes: a jq expression that never ends or eats the memory
fails its endpoint with a clear reason, its worker is replaced, the event loop keeps running, and
workers never see the operator's environment."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from httpsync.api.models import EndpointResult, HttpEndpointMappingSpec
from httpsync.engine.runner import SourceMapping, sync_source
from httpsync.engine.workers import PageTask, WorkerPool
from httpsync.sinks import Catalog
from tests.testapi import server
from tests.testapi.fixtures import StaticSecrets, pagination_spec, source_spec

USERS_PATH = "/api/offset/users"


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(1, memory_mb=512)
    yield p
    p.close()


def users(**mappings: Any) -> HttpEndpointMappingSpec:
    spec = HttpEndpointMappingSpec.model_validate(
        {
            "sourceRef": {"name": "test-source"},
            "kind": USERS_PATH,
            "selector": {"dataPath": ".data"},
            "mappings": {"identifier": ".id | tostring", "blueprint": '"user"', **mappings},
        }
    )
    spec.pagination = pagination_spec(type="offset", pageSize=50, totalPath=".total")
    return spec


async def sync(
    api: server.TestApi, catalog: Catalog, pool: WorkerPool, spec: HttpEndpointMappingSpec, name: str = "users"
) -> EndpointResult:
    source = source_spec(api.url, retry={"maxRetries": 0}, mappingTimeoutSeconds=1)
    (result,) = await sync_source(
        source, [SourceMapping(name, f"ns/{name}", spec)], StaticSecrets(), catalog.sink, catalog.state,
        concurrency=1, pool=pool,
    )  # fmt: skip
    return result


async def test_a_good_mapping_runs_in_the_pool(testapi: server.TestApi, catalog: Catalog, pool: WorkerPool) -> None:
    result = await sync(testapi, catalog, pool, users(title=".name | ascii_upcase"))
    assert (result.outcome, result.reason) == ("Succeeded", None), result.message
    assert result.entities_upserted == result.items_fetched > 50  # several pages
    entities = await catalog.sink.list_entities()
    assert all(e["title"] == e["title"].upper() for e in entities)
    assert pool.replaced == 0


@pytest.mark.parametrize(("field", "expr"), [("title", "until(false; .)"), ("properties", "last(range(1e12))")])
async def test_a_page_over_the_deadline_is_mapping_timeout_and_the_worker_is_replaced(
    testapi: server.TestApi, catalog: Catalog, pool: WorkerPool, field: str, expr: str
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    mappings: dict[str, Any] = {"title": expr} if field == "title" else {"properties": {"n": expr}}
    task = asyncio.create_task(ticker())
    try:
        result = await sync(testapi, catalog, pool, users(**mappings))
    finally:
        task.cancel()
    label = "mappings.title" if field == "title" else "mappings.properties.n"
    assert (result.outcome, result.reason, result.stalled) == ("Failed", "MappingTimeout", True)
    assert f"took longer than spec.mappingTimeoutSeconds (1s), so its worker was stopped; likely {label}" in (
        result.message or ""
    )
    assert f"GET {testapi.url}{USERS_PATH}" in (result.message or "")
    assert ticks > 10  # the event loop ran all along: jq was elsewhere
    assert pool.replaced == 1
    assert result.entities_deleted == 0

    again = await sync(testapi, catalog, pool, users(), name="other")
    assert (again.outcome, again.reason) == ("Succeeded", None), again.message
    assert again.entities_upserted == again.items_fetched > 0


async def test_a_worker_out_of_memory_is_a_clear_error_and_is_replaced(
    testapi: server.TestApi, catalog: Catalog, pool: WorkerPool
) -> None:
    result = await sync(testapi, catalog, pool, users(title='"x" * 1e9 | length'))
    assert (result.outcome, result.reason, result.stalled) == ("Failed", "MappingMemoryLimit", True), result.message
    message = result.message or ""
    assert "ran out of memory" in message and "its limit: 512 MiB, --worker-memory" in message, message
    assert "(the worker was killed by SIGABRT; its limit" in message and "Traceback" not in message
    again = await sync(testapi, catalog, pool, users(), name="other")
    assert (again.outcome, again.reason) == ("Succeeded", None), again.message


async def test_invalid_json_and_data_path_errors_keep_their_messages(
    testapi: server.TestApi, catalog: Catalog, pool: WorkerPool
) -> None:
    spec = users()
    spec.selector.data_path = ".nope"
    result = await sync(testapi, catalog, pool, spec)
    assert result.reason == "DataPathNotArray", result.message
    assert "selector.dataPath '.nope' found null, not an array" in (result.message or "")


def test_workers_start_with_an_empty_environment(monkeypatch: pytest.MonkeyPatch, pool: WorkerPool) -> None:
    monkeypatch.setenv("HTTPSYNC_PORT_CLIENT_SECRET", "s3cr3t")
    outcome = asyncio.run(pool.run(_noop_task(), 5))
    assert (outcome.error, outcome.items) == (None, 0)
    (worker,) = pool._all
    environ = Path(f"/proc/{worker.proc.pid}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
    assert names <= {b"PYTHONPATH"}, names
    assert b"s3cr3t" not in environ
    assert "HTTPSYNC_PORT_CLIENT_SECRET" in os.environ  # the parent's own is untouched


def _noop_task() -> PageTask:
    import json

    spec = users()
    plan = {"mapping": spec.to_wire(), "pagination": spec.pagination.to_wire()}  # type: ignore[union-attr]
    return PageTask(json.dumps(plan), "main", b'{"data": [], "total": 0}', "GET /test")


@pytest.mark.parametrize("value", [2**70, float("nan"), "\ud800", 1.5, "é", None, [1, {"a": True}]])
def test_entities_come_back_from_a_worker_unchanged(value: Any) -> None:
    """Entities travel as JSON when JSON gives them back exactly, pickled otherwise."""
    from httpsync.engine.mapping import PageResult
    from httpsync.engine.workers import PageOutcome, _pack_entities, _unpack_entities

    entity = {"identifier": "x", "blueprint": "b", "properties": {"v": value}}
    outcome = PageOutcome(page=PageResult(entities=[dict(entity)]))
    _pack_entities(outcome)
    back = _unpack_entities(pickle.loads(pickle.dumps(outcome))).page.entities[0]["properties"]["v"]
    if value != value:  # NaN
        assert back != back
    else:
        assert back == value and type(back) is type(value)
