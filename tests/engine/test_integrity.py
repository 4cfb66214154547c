"""Data integrity against a real loopback API serving exact bytes (issue 11 §2, deep nesting of §1):
large integer ids, a lone surrogate in one item, deep nesting, duplicates, a premature end."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from httpsync.api.models import EndpointResult, HttpEndpointMappingSpec, PaginationSpec
from httpsync.engine.client import SourceClient
from httpsync.engine.sync import sync_mapping
from httpsync.errors import EngineError
from httpsync.sinks import Catalog
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

OWNER = "default/items"


class RawApi(LoopbackServer):
    """Serves ``pages[path]``: exact bytes, page ``?page=N`` (1-based; page 1 without it); a page
    beyond the list is ``empty`` (an empty list of items by default). A page number in ``gates``
    waits for its event first."""

    def __init__(self) -> None:
        self.pages: dict[str, list[bytes]] = {}
        self.empty = b"[]"
        self.requests = 0
        self.gates: dict[int, asyncio.Event] = {}
        self.waiting = asyncio.Event()  # set when a request waits at a gate
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        super().__init__(app)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        pages = self.pages.get("/" + request.match_info["path"])
        if pages is None:
            return web.Response(status=404)
        n = int(request.query.get("page", "1"))
        if n in self.gates:
            self.waiting.set()
            await self.gates[n].wait()
        body = pages[n - 1] if n <= len(pages) else self.empty
        return web.Response(body=body, content_type="application/json")


@pytest.fixture
async def api() -> AsyncIterator[RawApi]:
    async with RawApi() as a:
        yield a


def spec(kind: str = "/items", *, data_path: str | None = None, **mappings: Any) -> HttpEndpointMappingSpec:
    selector: dict[str, Any] = {"query": "true"}
    if data_path is not None:
        selector["dataPath"] = data_path
    return HttpEndpointMappingSpec.model_validate(
        {
            "sourceRef": {"name": "src"},
            "kind": kind,
            "selector": selector,
            "mappings": {"identifier": ".id | tostring", "blueprint": '"item"', **mappings},
        }
    )


async def sync(
    api: RawApi, catalog: Catalog, m: HttpEndpointMappingSpec, pagination: PaginationSpec | None = None
) -> EndpointResult:
    async with await SourceClient.create(source_spec(api.url, retry={"maxRetries": 0}), StaticSecrets()) as client:
        return await sync_mapping(
            client, "items", m, pagination or PaginationSpec(), catalog.sink, catalog.state, owner=OWNER
        )


async def entities(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return {e["identifier"]: e for e in await catalog.sink.list_entities()}


# --------------------------------------------------------------------------- large integers

BIG = [12345678901234567891, 12345678901234567892, 12345678901234567893]  # beyond 2**63 and 2**53
MID = [9007199254740993, 9007199254740995, 9007199254740997]  # between 2**53 and 2**63


def _big_items(ids: list[int]) -> bytes:
    return ("[" + ",".join(f'{{"id": {i}, "n": {i}, "name": "x{k}"}}' for k, i in enumerate(ids)) + "]").encode()


@pytest.mark.parametrize("ids", [BIG, MID], ids=["beyond-2^63", "beyond-2^53"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["top-level", "dataPath"])
@pytest.mark.parametrize(
    "mappings",
    [
        {"properties": {"n": ".n"}},  # every expression simple: the fast path
        {"title": ".name | ascii_upcase", "properties": {"n": ".n", "m": "[.n][0]"}},  # jq for some fields
        {"identifier": '(.id | tostring) + ""', "properties": {"n": ".n"}},  # jq for the identifier
    ],
    ids=["fast", "jq-fields", "jq-identifier"],
)
async def test_large_integer_ids_keep_every_digit(
    api: RawApi, catalog: Catalog, ids: list[int], wrapped: bool, mappings: dict[str, Any]
) -> None:
    body = _big_items(ids)
    api.pages["/items"] = [b'{"items": ' + body + b', "total": 3}' if wrapped else body]
    r = await sync(api, catalog, spec(data_path=".items" if wrapped else None, **mappings))
    assert (r.outcome, r.entities, r.entities_upserted, r.mapping_error_count) == ("Succeeded", 3, 3, 0), r
    got = await entities(catalog)
    assert sorted(got) == [str(i) for i in ids]
    assert [got[str(i)]["properties"]["n"] for i in ids] == ids  # the property keeps the integer too
    r = await sync(api, catalog, spec(data_path=".items" if wrapped else None, **mappings))
    assert (r.entities_upserted, r.entities_unchanged) == (0, 3)


async def test_large_integer_ids_through_a_jq_data_path(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [b'{"data": {"items": ' + _big_items(BIG) + b"}}"]
    r = await sync(api, catalog, spec(data_path=".data | .items | map(select(.id != null))"))
    assert (r.outcome, r.entities) == ("Succeeded", 3), r
    assert sorted(await entities(catalog)) == [str(i) for i in BIG]


async def test_a_large_integer_cursor_is_sent_back_exactly(api: RawApi, catalog: Catalog) -> None:
    cursor = 12345678901234567891
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        c = request.query.get("cursor")
        seen.append(c or "")
        if c is None:
            return web.json_response(text=f'{{"data": [{{"id": 1}}], "next": {cursor}}}')
        return web.json_response(text='{"data": [{"id": 2}], "next": null}')

    app = web.Application()
    app.router.add_get("/c", handle)
    async with LoopbackServer(app) as server:
        async with await SourceClient.create(source_spec(server.url), StaticSecrets()) as client:
            pagination = PaginationSpec.model_validate({"type": "cursor", "cursorPath": ".next"})
            r = await sync_mapping(
                client, "c", spec("/c", data_path=".data"), pagination, catalog.sink, catalog.state, owner=OWNER
            )
    assert (r.outcome, r.entities) == ("Succeeded", 2), r
    assert seen == ["", str(cursor)]


# --------------------------------------------------------------------------- a lone surrogate


@pytest.mark.parametrize("wrapped", [False, True], ids=["top-level", "dataPath"])
@pytest.mark.parametrize("mappings", [{"title": ".name"}, {"title": ".name | ascii_downcase"}], ids=["fast", "jq"])
async def test_a_lone_surrogate_skips_its_item_only(
    api: RawApi, catalog: Catalog, wrapped: bool, mappings: dict[str, Any]
) -> None:
    items = b'[{"id": 1, "name": "a"}, {"id": 2, "name": "bad \\ud800 name"}, {"id": 3, "name": "c"}]'
    api.pages["/items"] = [b'{"items": ' + items + b"}" if wrapped else items]
    r = await sync(api, catalog, spec(data_path=".items" if wrapped else None, **mappings))
    assert (r.outcome, r.reason, r.items_fetched, r.entities, r.mapping_error_count) == ("Succeeded", None, 3, 2, 1), r
    assert "lone UTF-16 surrogate" in r.mapping_error_samples[0], r.mapping_error_samples
    assert sorted(await entities(catalog)) == ["1", "3"]


async def test_a_lone_surrogate_under_a_jq_data_path_says_what_is_wrong(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [b'{"items": [{"id": 1}, {"id": 2, "name": "\\ud800"}]}']
    r = await sync(api, catalog, spec(data_path=".items | map(.)"))
    assert (r.outcome, r.reason) == ("Failed", "InvalidResponse"), r
    assert "lone UTF-16 surrogate" in (r.message or "") and "plain path" in (r.message or "")


async def test_a_lone_surrogate_does_not_break_pagination(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [
        b'{"items": [{"id": 1}, {"id": 2, "name": "\\ud800"}], "last": 2}',
        b'{"items": [{"id": 3}, {"id": 4}], "last": 2}',
    ]
    pagination = PaginationSpec.model_validate({"type": "page", "pageSize": 2, "lastPagePath": ".last"})
    r = await sync(api, catalog, spec(data_path=".items", title=".name"), pagination)
    assert (r.outcome, r.pages, r.entities, r.mapping_error_count) == ("Succeeded", 2, 3, 1), r


# --------------------------------------------------------------------------- deep nesting


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("wrapped", [False, True], ids=["top-level", "dataPath"])
@pytest.mark.parametrize("mappings", [{}, {"title": ".name | ascii_downcase"}], ids=["fast", "jq"])
async def test_a_body_nested_within_the_limit_syncs(
    api: RawApi, catalog: Catalog, wrapped: bool, mappings: dict[str, Any]
) -> None:
    items = b'[{"id": 1, "name": "A"}, {"id": 2, "name": "B", "unmapped": ' + _nested(1000) + b"}]"
    api.pages["/items"] = [b'{"items": ' + items + b"}" if wrapped else items]
    r = await sync(api, catalog, spec(data_path=".items" if wrapped else None, **mappings))
    assert (r.outcome, r.entities, r.mapping_error_count) == ("Succeeded", 2, 0), r


@pytest.mark.parametrize("depth", [2000, 10000])
@pytest.mark.parametrize("wrapped", [False, True], ids=["top-level", "dataPath"])
async def test_a_deeply_nested_body_fails_the_endpoint_clearly(
    api: RawApi, catalog: Catalog, depth: int, wrapped: bool
) -> None:
    items = b'[{"id": 1}, {"id": 2, "unmapped": ' + _nested(depth) + b"}]"
    api.pages["/items"] = [b'{"items": ' + items + b"}" if wrapped else items]
    r = await sync(api, catalog, spec(data_path=".items" if wrapped else None))
    assert (r.outcome, r.reason) == ("Failed", "ResponseTooDeep"), r
    assert "nested" in (r.message or "") and "Traceback" not in (r.message or "")


@pytest.mark.parametrize("mappings", [{"properties": {"deep": ".deep"}}, {"properties": {"deep": ".deep | ."}}])
async def test_a_deeply_nested_mapped_property_fails_its_item_only(
    api: RawApi, catalog: Catalog, mappings: dict[str, Any]
) -> None:
    api.pages["/items"] = [b'[{"id": 1, "deep": 1}, {"id": 2, "deep": ' + _nested(500) + b'}, {"id": 3}]']
    r = await sync(api, catalog, spec(**mappings))
    assert (r.outcome, r.entities, r.mapping_error_count) == ("Succeeded", 2, 1), r
    assert "mappings.properties.deep" in r.mapping_error_samples[0] and "nested" in r.mapping_error_samples[0]
    assert sorted(await entities(catalog)) == ["1", "3"]


# --------------------------------------------------------------------------- duplicate identifiers


def _items(*pairs: tuple[int, str]) -> bytes:
    return ("[" + ",".join(f'{{"id": {i}, "name": "{n}"}}' for i, n in pairs) + "]").encode()


async def test_duplicates_on_one_page_keep_the_first_and_are_counted(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [_items((1, "first"), (2, "b"), (1, "second"), (1, "third"))]
    m = spec(title=".name")
    r = await sync(api, catalog, m)
    assert (r.outcome, r.entities, r.entities_upserted, r.entities_duplicate) == ("Succeeded", 2, 2, 2), r
    assert r.mapping_error_count == 2 and "item/1 is produced by more than one item" in r.mapping_error_samples[0]
    assert (await entities(catalog))["1"]["title"] == "first"
    assert r.to_json()["entitiesDuplicate"] == 2
    r = await sync(api, catalog, m)
    assert (r.entities, r.entities_upserted, r.entities_unchanged, r.entities_duplicate) == (2, 0, 2, 2)


async def test_duplicates_on_different_pages_are_not_re_upserted_each_sync(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [_items((1, "first"), (2, "b")), _items((3, "c"), (1, "second")), _items((1, "third"))]
    m = spec(title=".name")
    pagination = PaginationSpec.model_validate({"type": "page", "pageSize": 2})
    r = await sync(api, catalog, m, pagination)
    assert (r.outcome, r.pages, r.entities, r.entities_upserted, r.entities_duplicate) == ("Succeeded", 3, 3, 3, 2), r
    assert (await entities(catalog))["1"]["title"] == "first"
    for _ in range(2):
        r = await sync(api, catalog, m, pagination)
        assert (r.entities, r.entities_upserted, r.entities_unchanged, r.entities_deleted) == (3, 0, 3, 0), r
        assert r.entities_duplicate == 2
    assert (await entities(catalog))["1"]["title"] == "first"


# --------------------------------------------------------------------------- premature end


async def test_pages_ending_before_the_announced_total_delete_nothing(api: RawApi, catalog: Catalog) -> None:
    def page(*ids: int) -> bytes:
        return b'{"items": ' + _items(*((i, "n") for i in ids)) + b', "total": 5}'

    pagination = PaginationSpec.model_validate({"type": "page", "pageSize": 2, "totalPath": ".total"})
    api.pages["/items"] = [page(1, 2), page(3, 4), page(5)]
    r = await sync(api, catalog, spec(data_path=".items"), pagination)
    assert (r.outcome, r.entities) == ("Succeeded", 5), r
    api.pages["/items"] = [page(1, 2), page(3, 4), page()]  # item 5 is still announced: an empty page early
    r = await sync(api, catalog, spec(data_path=".items"), pagination)
    assert (r.outcome, r.reason, r.entities_deleted, r.entities_unchanged) == ("Failed", "IncompleteFetch", 0, 4), r
    assert "ended after 4 items, but the API announced 5" in (r.message or "") and "nothing was deleted" in r.message
    assert sorted(await entities(catalog)) == ["1", "2", "3", "4", "5"]


# --------------------------------------------------------------------------- overlapping syncs


async def test_overlapping_syncs_of_one_mapping_never_interleave(api: RawApi, tmp_path: Path) -> None:
    """Two catalogs on one file (two processes, or the CLI and the operator): while one sync runs, a
    second sync of the same mapping fails fast with SyncInProgress and deletes nothing."""
    n = 200
    api.pages["/items"] = [_items(*((i, "n") for i in range(k, k + 50))) for k in range(0, n, 50)]
    pagination = PaginationSpec.model_validate({"type": "page", "pageSize": 50})
    m = spec()
    first, second = await Catalog.open(tmp_path / "c.db"), await Catalog.open(tmp_path / "c.db")
    second.state.wait_seconds = 0
    try:
        assert (await sync(api, first, m, pagination)).entities_upserted == n
        api.gates[3] = asyncio.Event()  # the next sync of `first` stops at page 3
        running = asyncio.create_task(sync(api, first, m, pagination))
        await asyncio.wait_for(api.waiting.wait(), 10)
        r = await sync(api, second, m, pagination)
        assert (r.outcome, r.reason, r.requests, r.entities_deleted) == ("Failed", "SyncInProgress", 0, 0), r
        assert "another sync of default/items is running" in (r.message or "") and "lease" in (r.message or "")
        api.gates[3].set()
        r = await running
        assert (r.outcome, r.entities_unchanged, r.entities_deleted) == ("Succeeded", n, 0), r
        assert len(await entities(second)) == n
        r = await sync(api, second, m, pagination)  # the lease was dropped: the next sync runs
        assert (r.outcome, r.entities_unchanged, r.entities_deleted) == ("Succeeded", n, 0), r
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_second_sync_waits_for_the_first_to_end(api: RawApi, catalog: Catalog) -> None:
    api.pages["/items"] = [_items((1, "a"), (2, "b"))]
    api.gates[1] = asyncio.Event()
    running = asyncio.create_task(sync(api, catalog, spec()))
    await asyncio.wait_for(api.waiting.wait(), 10)
    waiting = asyncio.create_task(sync(api, catalog, spec()))  # waits (up to wait_seconds) for the lease
    await asyncio.sleep(0.3)
    assert not waiting.done()
    api.gates[1].set()
    assert (await running).entities_upserted == 2
    r = await waiting
    assert (r.outcome, r.entities_unchanged, r.entities_deleted) == ("Succeeded", 2, 0), r


async def test_the_lease_of_a_crashed_sync_expires(catalog: Catalog) -> None:
    def lease(expires: float, holder: str = "elsewhere:1:p:s") -> Any:
        def run(conn: Any) -> None:
            row = (OWNER, holder, time.time(), expires)
            conn.execute("INSERT OR REPLACE INTO sync_leases VALUES (?, ?, ?, ?)", row)

        return catalog.db.call(run)

    catalog.state.wait_seconds = 0
    await lease(time.time() + 30)  # a crash a moment ago: its lease still runs
    with pytest.raises(EngineError) as info:
        await catalog.state.open(OWNER)
    assert info.value.reason == "SyncInProgress" and "held by elsewhere:1:p:s" in info.value.message
    await lease(time.time() - 1)  # expired
    state = await catalog.state.open(OWNER)
    await state.close()
    # A process of this host, with this pid, that is not this process (a restarted container): gone.
    await lease(time.time() + 30, f"{socket.gethostname()}:{os.getpid()}:another:s")
    state = await catalog.state.open(OWNER)
    await state.close()
    state = await catalog.state.open(OWNER)  # closing dropped the lease
    await state.close()


async def test_a_sync_that_lost_its_lease_stops_writing(catalog: Catalog) -> None:
    state = await catalog.state.open(OWNER)
    to_push, _ = await state.diff([{"blueprint": "item", "identifier": "1", "properties": {}, "relations": {}}])
    await catalog.db.call(lambda c: c.execute("UPDATE sync_leases SET holder = 'other:2:y' WHERE owner = ?", (OWNER,)))
    with pytest.raises(EngineError) as info:
        await state.commit(to_push, [])
    assert info.value.reason == "SyncInProgress" and "lost its lease" in info.value.message
    with pytest.raises(EngineError):
        await state.diff([])
    await state.close()
    assert await catalog.db.call(lambda c: c.execute("SELECT holder FROM sync_leases").fetchall()) == [("other:2:y",)]
