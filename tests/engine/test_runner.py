"""The per-source runner: one client per source, mappings concurrently under a limit (shared across
sources or not), a source-level failure as a failed result for every mapping; sync_source into a
real catalog, against the loopback test API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from httpsync.api.models import HttpEndpointMappingSpec
from httpsync.engine.client import SourceClient
from httpsync.engine.runner import SourceMapping, run_source, sync_source
from httpsync.engine.sync import failed_result
from httpsync.errors import DestinationDeniedError, EngineError
from httpsync.http.redact import register_secret
from httpsync.sinks import Catalog
from tests.testapi import server
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec


def paged(kind: str, **selector: Any) -> HttpEndpointMappingSpec:
    spec = mapping_spec(kind, **selector)
    spec.pagination = pagination_spec(type="offset", pageSize=50)
    return spec


def failed(name: str, e: EngineError) -> tuple[str, str, str]:
    return (name, e.reason, e.message)


async def test_sync_source_syncs_every_mapping_in_order(testapi: server.TestApi, catalog: Catalog) -> None:
    codes: list[int | None] = []
    checked: list[str] = []
    mappings = [
        SourceMapping("b", "ns/b", paged("/api/offset/users", dataPath=".data")),
        SourceMapping("a", "ns/a", mapping_spec("/auth/bearer/users")),
        SourceMapping("broken", "ns/broken", mapping_spec("/fault/status/404")),
    ]
    source = source_spec(testapi.url, auth={"type": "bearer", "secretRef": {"name": "bearer"}}, retry={"maxRetries": 0})
    results = await sync_source(
        source,
        mappings,
        StaticSecrets(),
        catalog.sink,
        catalog.state,
        concurrency=2,
        check_url=checked.append,
        on_response=codes.append,
    )
    assert [(r.mapping, r.kind, r.outcome) for r in results] == [
        ("b", "/api/offset/users", "Succeeded"),
        ("a", "/auth/bearer/users", "Succeeded"),
        ("broken", "/fault/status/404", "Failed"),
    ]
    assert (results[0].entities_upserted, results[0].pages) == (len(server.USERS), -(-len(server.USERS) // 50))
    assert results[1].entities_upserted == 5
    assert results[2].reason == "HttpError"
    assert checked[0] == testapi.url  # the baseUrl first, then every request
    assert {testapi.url + r.raw_path for r in testapi.log} <= set(checked)
    assert sorted(set(codes)) == [200, 404] and len(codes) == len(testapi.log)
    owned = {owner: [r async for r in catalog.state.owned(owner)] for owner in ("ns/a", "ns/b")}
    assert (len(owned["ns/a"]), len(owned["ns/b"])) == (5, len(server.USERS))

    again = await sync_source(source, mappings[:2], StaticSecrets(), catalog.sink, catalog.state, concurrency=1)
    assert [(r.entities_upserted, r.entities_unchanged) for r in again] == [(0, len(server.USERS)), (0, 5)]


async def test_a_source_that_cannot_be_reached_fails_every_mapping(testapi: server.TestApi, catalog: Catalog) -> None:
    mappings = [SourceMapping(n, f"ns/{n}", mapping_spec("/auth/bearer/users")) for n in ("a", "b")]
    source = source_spec(testapi.url, auth={"type": "bearer", "secretRef": {"name": "missing"}})
    results = await sync_source(source, mappings, StaticSecrets(), catalog.sink, catalog.state, concurrency=4)
    assert [(r.mapping, r.outcome, r.reason, r.stalled) for r in results] == [
        ("a", "Failed", "SecretNotFound", True),
        ("b", "Failed", "SecretNotFound", True),
    ]
    assert "missing" in (results[0].message or "")
    assert testapi.log == []

    def deny(url: str) -> None:
        raise DestinationDeniedError(f"{url} is not allowed")

    secrets = StaticSecrets()
    results = await sync_source(
        source_spec(testapi.url, auth={"type": "bearer", "secretRef": {"name": "bearer"}}),
        mappings,
        secrets,
        catalog.sink,
        catalog.state,
        concurrency=4,
        check_url=deny,
    )
    assert {(r.outcome, r.reason) for r in results} == {("Failed", "DestinationDenied")}
    assert (testapi.log, secrets.reads) == ([], [])  # denied before the Secret is read


async def test_the_failure_factory_is_the_callers(testapi: server.TestApi, catalog: Catalog) -> None:
    seen: list[EngineError] = []

    def remember(m: SourceMapping, e: EngineError) -> Any:
        seen.append(e)
        return failed_result(m.name, m.spec.kind, e)

    source = source_spec(testapi.url, auth={"type": "bearer", "secretRef": {"name": "missing"}})
    mappings = [SourceMapping("a", "ns/a", mapping_spec("/x"))]
    (r,) = await sync_source(
        source, mappings, StaticSecrets(), catalog.sink, catalog.state, concurrency=1, failed=remember
    )
    assert [e.reason for e in seen] == [r.reason] == ["SecretNotFound"]


async def test_no_mapping_no_client(testapi: server.TestApi) -> None:
    secrets = StaticSecrets()
    source = source_spec(testapi.url, auth={"type": "bearer", "secretRef": {"name": "bearer"}})

    async def work(client: SourceClient, m: str) -> str:
        raise AssertionError("no work")

    assert await run_source(source, [], secrets, work, failed, concurrency=1) == []
    assert secrets.reads == []
    with pytest.raises(ValueError, match="at least 1"):
        await run_source(source, ["a"], secrets, work, failed, concurrency=0)


async def test_a_shared_limit_bounds_mappings_across_sources(testapi: server.TestApi) -> None:
    running = peak = 0

    async def work(client: SourceClient, m: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return m

    limit = asyncio.Semaphore(2)
    first, second = await asyncio.gather(
        run_source(source_spec(testapi.url), ["a", "b", "c"], StaticSecrets(), work, failed, concurrency=limit),
        run_source(source_spec(testapi.url), ["d", "e"], StaticSecrets(), work, failed, concurrency=limit),
    )
    assert (first, second, peak) == (["a", "b", "c"], ["d", "e"], 2)

    peak = 0
    alone = await run_source(source_spec(testapi.url), ["x", "y", "z"], StaticSecrets(), work, failed, concurrency=1)
    assert alone == ["x", "y", "z"]
    assert peak == 1


async def test_a_mapping_whose_work_raises_fails_alone(testapi: server.TestApi) -> None:
    register_secret("runner-sekrit-42")

    async def work(client: SourceClient, m: str) -> Any:
        if m == "boom":
            raise RuntimeError("boom with runner-sekrit-42")
        if m == "engine":
            raise EngineError("told", reason="HttpError")
        return m

    results = await run_source(
        source_spec(testapi.url), ["ok", "boom", "engine"], StaticSecrets(), work, failed, concurrency=3
    )
    assert results[0] == "ok"
    assert results[1][:2] == ("boom", "SyncFailed")
    assert "runner-sekrit-42" not in results[1][2] and "RuntimeError" in results[1][2]
    assert results[2] == ("engine", "HttpError", "told")


def test_failed_result_fits_the_status() -> None:
    r = failed_result("m", "/k", EngineError("y" * 10_000, reason="HttpError", stalled=True))
    assert (r.outcome, r.reason, r.stalled, len(r.message or "")) == ("Failed", "HttpError", True, 4096)
    assert r.to_status().to_wire()["message"] == r.message
