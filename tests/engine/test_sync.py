"""sync_mapping and preview_mapping: change detection, deletion only after success, the deletion
guard, failures keeping what was pushed, sink rejections; first with scripted pages, then against
the loopback test API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from httpsync.api.models import HttpEndpointMappingSpec, PaginationSpec
from httpsync.engine import sync as sync_module
from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters
from httpsync.engine.ports import SinkReport
from httpsync.engine.sync import deletion_blocked_message, preview_mapping, sync_mapping
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import ConnectionFailedError, EngineError
from httpsync.http.redact import register_secret
from httpsync.sinks import Catalog
from tests.testapi import server
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec

OWNER = "default/users"


def mapping(**extra: Any) -> HttpEndpointMappingSpec:
    data: dict[str, Any] = {
        "sourceRef": {"name": "src"},
        "kind": "/users",
        "selector": {"query": ".active != false"},
        "mappings": {"identifier": ".id", "blueprint": '"user"', "properties": {"n": ".n"}},
    }
    data.update(extra)
    return HttpEndpointMappingSpec.model_validate(data)


def users(ids: Sequence[int], n: Any = 0) -> list[dict[str, Any]]:
    return [{"id": i, "n": n} for i in ids]


class Script:
    """Stands in for fetch.iter_pages: yields the given pages, then raises ``error`` if set."""

    def __init__(self) -> None:
        self.pages: list[list[Any]] = []
        self.error: BaseException | None = None
        self.consumed = 0

    async def iter_pages(
        self, client: Any, m: HttpEndpointMappingSpec, p: PaginationSpec, counters: FetchCounters
    ) -> AsyncIterator[list[Any]]:
        for page in self.pages:
            counters.requests += 1
            counters.pages += 1
            counters.items_fetched += len(page)
            self.consumed += 1
            yield page
        if self.error is not None:
            raise self.error


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    s = Script()
    monkeypatch.setattr(sync_module, "iter_pages", s.iter_pages)
    return s


async def run(catalog: Catalog, spec: HttpEndpointMappingSpec | None = None, sink: Any = None) -> Any:
    return await sync_mapping(
        None, "users", spec or mapping(), PaginationSpec(), sink or catalog.sink, catalog.state, owner=OWNER
    )


async def ids_in(catalog: Catalog) -> list[str]:
    return [e["identifier"] for e in await catalog.sink.list_entities()]


# --------------------------------------------------------------------------- scripted pages


async def test_second_sync_pushes_nothing_and_a_change_pushes_one(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(0, 50)), users(range(50, 100))]
    r = await run(catalog)
    assert (r.outcome, r.reason, r.pages, r.items_fetched) == ("Succeeded", None, 2, 100)
    assert (r.entities, r.entities_upserted, r.entities_unchanged, r.entities_deleted) == (100, 100, 0, 0)

    r = await run(catalog)
    assert (r.entities_upserted, r.entities_unchanged) == (0, 100)

    script.pages[1][0]["n"] = 7
    r = await run(catalog)
    assert (r.entities_upserted, r.entities_unchanged) == (1, 99)
    assert len(await ids_in(catalog)) == 100


async def test_vanished_entities_are_deleted_after_a_successful_sync(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(10))]
    await run(catalog)
    script.pages = [users(range(3, 10))]
    r = await run(catalog)
    assert (r.outcome, r.entities_deleted, r.deletion_blocked) == ("Succeeded", 3, None)
    assert await ids_in(catalog) == [str(i) for i in range(3, 10)]
    assert (await run(catalog)).entities_deleted == 0


async def test_filtered_items_count_and_their_entities_go(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(4))]
    await run(catalog)
    script.pages = [[{"id": 0}, {"id": 1, "active": False}, {"id": 2}, {"id": 3}]]
    r = await run(catalog)
    assert (r.items_filtered, r.entities_deleted) == (1, 1)


async def test_the_deletion_guard_blocks_a_mass_deletion(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(10))]
    await run(catalog)
    script.pages = [users(range(4))]  # 6 of 10 would go: more than the default 50%
    r = await run(catalog)
    assert (r.outcome, r.reason, r.entities_deleted) == ("Succeeded", "DeletionBlocked", 0)
    assert r.deletion_blocked == r.message == deletion_blocked_message(6, 10, 50)
    assert "6 of the 10" in r.message and "spec.deletionGuard.disabled: true" in r.message
    assert "maxDeletePercent" in r.message
    assert len(await ids_in(catalog)) == 10

    script.pages = [[]]  # an empty response does not wipe the catalog either
    assert (await run(catalog)).reason == "DeletionBlocked"
    assert len(await ids_in(catalog)) == 10

    script.pages = [users(range(4))]
    r = await run(catalog, mapping(deletionGuard={"maxDeletePercent": 60}))
    assert (r.reason, r.entities_deleted) == (None, 6)


async def test_a_disabled_guard_lets_everything_go(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(5))]
    await run(catalog)
    script.pages = [[]]
    r = await run(catalog, mapping(deletionGuard={"disabled": True}))
    assert (r.outcome, r.entities_deleted) == ("Succeeded", 5)
    assert await ids_in(catalog) == []


async def test_a_failed_fetch_deletes_nothing_and_keeps_what_it_pushed(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(10))]
    await run(catalog)
    script.pages = [users([0, 1, 100, 101], n=1)]
    script.error = ConnectionFailedError("GET http://api/users?page=2: connection refused")
    r = await run(catalog)
    assert (r.outcome, r.reason, r.stalled) == ("Failed", "ConnectionFailed", False)
    assert "connection refused" in r.message
    assert (r.entities_upserted, r.entities_deleted) == (4, 0)
    assert sorted(await ids_in(catalog), key=int) == [str(i) for i in [*range(10), 100, 101]]

    script.error = None
    script.pages = [users([0, 1, 100, 101], n=1)]  # now complete: the pushed ones are unchanged
    r = await run(catalog, mapping(deletionGuard={"disabled": True}))
    assert (r.entities_upserted, r.entities_unchanged, r.entities_deleted) == (0, 4, 8)


async def test_an_unexpected_exception_fails_with_a_redacted_message(script: Script, catalog: Catalog) -> None:
    register_secret("sekrit-token-123")
    script.pages = [users(range(3))]
    script.error = RuntimeError("boom with sekrit-token-123 inside")
    r = await run(catalog)
    assert (r.outcome, r.reason) == ("Failed", "InternalError")
    assert "sekrit-token-123" not in r.message and "***" in r.message
    assert r.entities_deleted == 0


async def test_mapping_errors_are_counted_and_sampled_without_failing(script: Script, catalog: Catalog) -> None:
    script.pages = [[{"id": None}] * 4, [{"id": 1}, {"id": None}, {"id": None}, "text"]]
    r = await run(catalog)
    assert (r.outcome, r.entities_upserted, r.mapping_error_count) == ("Succeeded", 1, 7)
    assert len(r.mapping_error_samples) == 5
    assert r.mapping_error_samples[0] == "mappings.identifier is null"
    assert r.to_json()["mappingErrors"] == 7


async def test_invalid_jq_fails_the_sync_naming_the_field(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(3))]
    spec = mapping(mappings={"identifier": ".id", "blueprint": '"user"', "properties": {"email": ".email |"}})
    r = await run(catalog, spec)
    assert (r.outcome, r.reason, r.stalled) == ("Failed", "InvalidJq", True)
    assert r.message.startswith("mappings.properties.email: invalid jq")
    assert script.consumed == 0


class RejectingSink:
    """Rejects the entities whose identifier is in ``reject``."""

    name = "rejecting"

    def __init__(self, inner: Any, reject: set[str]) -> None:
        self.inner = inner
        self.reject = reject

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        ok = [e for e in entities if e["identifier"] not in self.reject]
        await self.inner.upsert(owner, ok, sync_id=sync_id)
        failed = [(EntityRef(e["blueprint"], e["identifier"]), "422 invalid") for e in entities if e not in ok]
        return SinkReport(failed=failed)

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        return await self.inner.delete(owner, refs, sync_id=sync_id)  # type: ignore[no-any-return]

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_sink_rejections_are_counted_and_retried_next_time(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(4))]
    r = await run(catalog, sink=RejectingSink(catalog.sink, {"2"}))
    assert (r.outcome, r.entities_upserted, r.entities_failed) == ("Succeeded", 3, 1)
    assert r.sink_error_samples == ["user/2: 422 invalid"]
    r = await run(catalog)
    assert (r.entities_upserted, r.entities_unchanged) == (1, 3)


class RecordingSink:
    """Records every call (with its sync id) and passes it on to ``inner``."""

    name = "recording"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str | None, Any]] = []  # (method, sync id, what)

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        assert owner == OWNER
        self.calls.append(("upsert", sync_id, sorted(e["identifier"] for e in entities)))
        return await self.inner.upsert(owner, entities, sync_id=sync_id)  # type: ignore[no-any-return]

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        assert owner == OWNER
        self.calls.append(("delete", sync_id, sorted(r.identifier for r in refs)))
        return await self.inner.delete(owner, refs, sync_id=sync_id)  # type: ignore[no-any-return]

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        assert owner == OWNER
        self.calls.append(("completed", sync_id, {"entities": entities, "full": full}))

    async def aclose(self) -> None:
        pass

    def take(self) -> list[tuple[str, str | None, Any]]:
        calls, self.calls = self.calls, []
        return calls


async def test_each_sync_has_its_id_and_a_complete_one_tells_the_sink(script: Script, catalog: Catalog) -> None:
    sink = RecordingSink(catalog.sink)
    script.pages = [users(range(3)), users(range(3, 5))]
    await run(catalog, sink=sink)
    first = sink.take()
    sync_id = first[0][1]
    assert isinstance(sync_id, str) and len(sync_id) == 32 and int(sync_id, 16) >= 0
    assert first == [
        ("upsert", sync_id, ["0", "1", "2", "3", "4"]),
        ("completed", sync_id, {"entities": 5, "full": True}),  # every entity was sent
    ]

    script.pages = [users(range(1, 5)), users([9])]  # 0 vanished, 9 is new, the rest unchanged
    r = await run(catalog, sink=sink)
    assert (r.entities_upserted, r.entities_unchanged, r.entities_deleted) == (1, 4, 1)
    second = sink.take()
    other = second[0][1]
    assert other != sync_id
    assert second == [
        ("upsert", other, ["9"]),
        ("delete", other, ["0"]),
        ("completed", other, {"entities": 5, "full": False}),  # 4 were not sent again
    ]

    r = await run(catalog, sink=sink)  # nothing changed: nothing pushed, still completed
    (completed,) = sink.take()
    assert completed[0] == "completed" and completed[2] == {"entities": 5, "full": False}


async def test_rejected_entities_count_as_owned_when_completing(script: Script, catalog: Catalog) -> None:
    sink = RecordingSink(RejectingSink(catalog.sink, {"2"}))
    script.pages = [users(range(4))]
    r = await run(catalog, sink=sink)
    assert (r.outcome, r.entities_upserted, r.entities_failed) == ("Succeeded", 3, 1)
    assert sink.take()[-1][2] == {"entities": 4, "full": True}


async def test_a_failed_or_blocked_sync_is_not_completed(script: Script, catalog: Catalog) -> None:
    sink = RecordingSink(catalog.sink)
    script.pages = [users(range(10))]
    await run(catalog, sink=sink)
    sink.take()

    script.pages = [users(range(2))]  # 8 of 10 would go: blocked
    r = await run(catalog, sink=sink)
    assert r.reason == "DeletionBlocked"
    assert [c[0] for c in sink.take()] == []  # nothing changed, nothing deleted, not completed

    script.pages = [users(range(10), n=1)]
    script.error = ConnectionFailedError("GET http://api/users?page=2: connection refused")
    r = await run(catalog, sink=sink)
    assert r.outcome == "Failed"
    assert [c[0] for c in sink.take()] == ["upsert"]  # what was fetched is pushed; the sync is not complete


async def test_the_result_views(script: Script, catalog: Catalog) -> None:
    script.pages = [[{"id": None}, *users(range(3))]]
    r = await run(catalog, sink=RejectingSink(catalog.sink, {"1"}))
    assert list(r.to_json()) == [
        "mapping",
        "kind",
        "outcome",
        "reason",
        "message",
        "requests",
        "pages",
        "itemsFetched",
        "itemsFiltered",
        "entities",
        "entitiesUpserted",
        "entitiesUnchanged",
        "entitiesDeleted",
        "entitiesFailed",
        "entitiesDuplicate",
        "entitiesConflicting",
        "mappingErrors",
        "mappingErrorSamples",
        "deletionBlocked",
        "durationSeconds",
    ]
    doc = r.to_json()
    assert (doc["mapping"], doc["kind"], doc["outcome"], doc["reason"], doc["message"]) == (
        "users",
        "/users",
        "Succeeded",
        None,
        "",
    )
    assert (doc["entities"], doc["entitiesUpserted"], doc["entitiesFailed"], doc["mappingErrors"]) == (3, 2, 1, 1)
    assert doc["mappingErrorSamples"] == ["mappings.identifier is null"]
    assert doc["durationSeconds"] == r.duration_seconds

    wire = r.to_status().to_wire()  # the status' lastSync
    assert wire == {
        "outcome": "Succeeded",
        "requests": 1,
        "pages": 1,
        "itemsFetched": 4,
        "itemsFiltered": 0,
        "entities": 3,
        "entitiesUpserted": 2,
        "entitiesUnchanged": 0,
        "entitiesDeleted": 0,
        "entitiesFailed": 1,
        "entitiesDuplicate": 0,
        "entitiesConflicting": 0,
        "mappingErrors": {"count": 1, "samples": ["mappings.identifier is null"]},
        "sinkErrorSamples": ["user/1: 422 invalid"],
        "durationSeconds": r.duration_seconds,
    }

    script.pages = []
    script.error = EngineError("x" * 5000, reason="HttpError")
    failed = (await run(catalog)).to_status().to_wire()
    assert (failed["outcome"], failed["reason"], len(failed["message"])) == ("Failed", "HttpError", 2000)


class CountingState:
    """Wraps a MappingState, recording the size of every diff and commit."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.diffs: list[int] = []
        self.commits: list[int] = []

    async def diff(self, entities: Sequence[Entity]) -> Any:
        self.diffs.append(len(entities))
        return await self.inner.diff(entities)

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        self.commits.append(len(pushed))
        await self.inner.commit(pushed, deleted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingStore:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.states: list[CountingState] = []

    async def open(self, owner: str) -> CountingState:
        state = CountingState(await self.inner.open(owner))
        self.states.append(state)
        return state


async def run_counted(catalog: Catalog, spec: HttpEndpointMappingSpec | None = None) -> tuple[Any, CountingState]:
    store = CountingStore(catalog.state)
    r = await sync_mapping(None, "users", spec or mapping(), PaginationSpec(), catalog.sink, store, owner=OWNER)  # type: ignore[arg-type]
    return r, store.states[0]


async def test_small_pages_are_pushed_in_batches(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(p * 10, p * 10 + 10)) for p in range(250)]  # 2,500 entities, pages of 10
    r, state = await run_counted(catalog)
    assert (r.outcome, r.pages, r.entities, r.entities_upserted, r.entities_unchanged) == (
        "Succeeded",
        250,
        2500,
        2500,
        0,
    )
    assert state.diffs == [1000, 1000, 500] and state.commits == [1000, 1000, 500]
    r, state = await run_counted(catalog)
    assert (r.entities, r.entities_upserted, r.entities_unchanged, state.commits) == (2500, 0, 2500, [])


async def test_a_batch_holds_at_most_the_flush_size_plus_one_page(
    script: Script, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module, "FLUSH_ENTITIES", 25)
    script.pages = [users(range(p * 7, p * 7 + 7)) for p in range(10)]
    r, state = await run_counted(catalog)
    assert state.diffs == [28, 28, 14]
    assert (r.entities, r.entities_upserted) == (70, 70)


async def test_an_entity_met_again_on_a_later_page_is_a_duplicate(script: Script, catalog: Catalog) -> None:
    # The first one wins, in one batch or across batches; the others are counted, never pushed.
    script.pages = [users([1, 2]), users([3, 1]), users([1], n=5), users([4])]
    r, state = await run_counted(catalog)
    assert (r.entities, r.entities_upserted, r.entities_unchanged, r.entities_duplicate) == (4, 4, 0, 2)
    assert state.diffs == [6]  # one batch
    assert sorted(await ids_in(catalog)) == ["1", "2", "3", "4"]
    assert [e["properties"]["n"] for e in await catalog.sink.list_entities() if e["identifier"] == "1"] == [0]
    r, state = await run_counted(catalog)
    assert (r.entities, r.entities_upserted, r.entities_unchanged, r.entities_duplicate, state.commits) == (
        4,
        0,
        4,
        2,
        [],
    )


async def test_a_failed_fetch_still_pushes_the_pages_gathered_before_it(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(p * 10, p * 10 + 10)) for p in range(15)]  # 150: below a batch
    script.error = ConnectionFailedError("GET http://api/users?page=16: connection refused")
    r, state = await run_counted(catalog)
    assert (r.outcome, r.reason, r.entities, r.entities_upserted, r.entities_deleted) == (
        "Failed",
        "ConnectionFailed",
        150,
        150,
        0,
    )
    assert state.commits == [150]
    assert len(await ids_in(catalog)) == 150


class FailingSink:
    """Fails every upsert."""

    name = "failing"

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        raise ConnectionFailedError("sink unreachable")

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        raise AssertionError("nothing is deleted")

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        raise AssertionError("a failed sync is not completed")

    async def aclose(self) -> None:
        pass


async def test_a_failed_push_stops_the_sync_and_commits_nothing(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(p * 100, p * 100 + 100)) for p in range(30)]
    r = await run(catalog, sink=FailingSink())
    assert (r.outcome, r.message, r.entities_upserted, r.entities_deleted) == ("Failed", "sink unreachable", 0, 0)
    assert script.consumed == 10  # stopped at the first batch: nothing more fetched
    assert await ids_in(catalog) == []


async def test_a_fetch_failure_is_reported_even_if_the_last_push_fails(script: Script, catalog: Catalog) -> None:
    script.pages = [users(range(5))]
    script.error = ConnectionFailedError("GET http://api/users?page=2: connection refused")
    r = await run(catalog, sink=FailingSink())
    assert (r.outcome, r.reason, r.entities_upserted) == ("Failed", "ConnectionFailed", 0)
    assert "connection refused" in r.message


async def test_preview_stops_at_the_limit_and_lists_errors(script: Script) -> None:
    script.pages = [[{"id": None}, *users(range(5))], users(range(5, 10)), users(range(10, 15))]
    p = await preview_mapping(None, "users", mapping(), PaginationSpec(), limit=7)
    assert [e["identifier"] for e in p.entities] == [str(i) for i in range(7)]
    assert p.errors == ["mappings.identifier is null"]
    assert script.consumed == 2
    assert p.to_json()["itemsFetched"] == 11
    assert list(p.to_json()) == [
        "mapping",
        "kind",
        "outcome",
        "reason",
        "message",
        "requests",
        "pages",
        "itemsFetched",
        "itemsFiltered",
        "entities",
        "errors",
    ]
    assert p.to_json()["entities"] == p.entities


async def test_preview_reports_a_failure(script: Script) -> None:
    script.error = EngineError("nope", reason="HttpError")
    p = await preview_mapping(None, "users", mapping(), PaginationSpec())
    assert (p.result.outcome, p.result.reason, p.result.message, p.entities) == ("Failed", "HttpError", "nope", [])
    assert (p.to_json()["outcome"], p.to_json()["message"]) == ("Failed", "nope")


# --------------------------------------------------------------------------- the real HTTP engine


async def test_end_to_end_against_the_test_api(testapi: server.TestApi, catalog: Catalog) -> None:
    spec = mapping_spec("/api/page/users", dataPath=".items")
    pagination = pagination_spec(type="page", pageSize=50)
    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets()) as client:
        r = await sync_mapping(client, "users", spec, pagination, catalog.sink, catalog.state, owner=OWNER)
        assert (r.outcome, r.items_fetched, r.entities_upserted) == ("Succeeded", len(server.USERS), len(server.USERS))
        assert r.pages == -(-len(server.USERS) // 50) and r.requests >= r.pages
        r = await sync_mapping(client, "users", spec, pagination, catalog.sink, catalog.state, owner=OWNER)
        assert (r.entities_upserted, r.entities_unchanged) == (0, len(server.USERS))
    assert len(await ids_in(catalog)) == len(server.USERS)


async def test_a_500_mid_pagination_fails_and_deletes_nothing(testapi: server.TestApi, catalog: Catalog) -> None:
    pagination = pagination_spec(type="offset", pageSize=25)
    good = mapping_spec("/api/offset/users", dataPath=".data")
    bad = mapping_spec("/fault/mid500", dataPath=".data")
    spec = source_spec(testapi.url, retry={"maxRetries": 0})
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        r = await sync_mapping(client, "u", good, pagination, catalog.sink, catalog.state, owner=OWNER)
        assert r.entities_upserted == len(server.USERS)
        r = await sync_mapping(client, "u", bad, pagination, catalog.sink, catalog.state, owner=OWNER)
    assert (r.outcome, r.entities_deleted) == ("Failed", 0)
    assert r.reason == "HttpError" and "500" in r.message
    assert r.entities_unchanged == server.MID500
    assert len(await ids_in(catalog)) == len(server.USERS)
