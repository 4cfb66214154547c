"""Pages fetched ahead (issue 15) against the real test API: concurrent pages when the page list is
knowable, speculative prefetch, the next request started before a page is consumed; always the
pages, counts and deletions of sequential fetching, within the source's limits, and nothing left
running after a failure or an early stop. No timing thresholds: the server records what happened."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters, iter_pages, pages_ahead
from httpsync.engine.sync import preview_mapping, sync_mapping
from httpsync.errors import HttpStatusError, PaginationError
from httpsync.http.limits import RequestLimiter
from httpsync.sinks import Catalog
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec
from tests.testapi.server import TICKETS, TestApi, comments_of, many_items

KIND = "/api/many/items"
SIZE = 10
OWNER = "default/items"

# The sequential reference: page pagination ending at the short page, nothing fetched ahead but the
# next page. Every other mode must give exactly its pages.
SEQUENTIAL = {"type": "page", "pageSize": SIZE}
MODES = {
    "page+total": {"type": "page", "pageSize": SIZE, "totalPath": ".total"},
    "offset+total": {"type": "offset", "pageSize": SIZE, "totalPath": ".total"},
    "page+lastPageNumber": {"type": "page", "pageSize": SIZE, "lastPagePath": ".last_page"},
    "offset+prefetch": {"type": "offset", "pageSize": SIZE, "prefetch": 3},
    "page+prefetch": {"type": "page", "pageSize": SIZE, "prefetch": 16},
}
KNOWABLE = ("page+total", "offset+total", "page+lastPageNumber")


async def fetch(
    testapi: TestApi, pagination: dict[str, Any], *, concurrency: int = 4, source: dict[str, Any] | None = None
) -> tuple[list[list[Any]], FetchCounters]:
    counters = FetchCounters()
    pages: list[list[Any]] = []
    spec = source_spec(testapi.url, maxConcurrentRequests=concurrency, **(source or {}))
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        async for items in iter_pages(
            client, mapping_spec(KIND, dataPath=".items"), pagination_spec(**pagination), counters
        ):
            pages.append(items)
    return pages, counters


def page_numbers(testapi: TestApi) -> list[int]:
    """The page number of each request to KIND, in arrival order."""
    numbers = []
    for r in testapi.requests_to(KIND):
        numbers.append(int(r.query["page"]) if "page" in r.query else int(r.query["offset"]) // SIZE + 1)
    return numbers


async def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until true; a generous timeout only guards against hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- same pages as sequential


@pytest.mark.parametrize("mode", MODES)
async def test_pages_in_order_and_counts_as_sequential(testapi: TestApi, mode: str) -> None:
    testapi.state.many = many_items(95)  # 10 pages, the last one short
    expected, seq = await fetch(testapi, SEQUENTIAL)
    assert [len(p) for p in expected] == [10] * 9 + [5]
    testapi.state.log.clear()
    testapi.state.max_in_flight = 0
    testapi.state.latency = 0.02  # so that requests overlap

    pages, counters = await fetch(testapi, MODES[mode], concurrency=4)
    assert pages == expected  # same pages, same order
    assert (counters.pages, counters.items_fetched) == (seq.pages, seq.items_fetched) == (10, 95)
    assert counters.requests == len(testapi.requests_to(KIND))
    assert 2 <= testapi.state.max_in_flight <= 4  # concurrent, never beyond maxConcurrentRequests
    numbers = sorted(page_numbers(testapi))
    assert len(set(numbers)) == len(numbers)  # no page requested twice
    if mode in KNOWABLE:
        assert numbers == list(range(1, 11))  # no request wasted
    else:
        assert numbers[:10] == list(range(1, 11))  # and speculation beyond the last page, within prefetch
        assert set(numbers[10:]) <= set(range(11, 11 + MODES[mode]["prefetch"]))


async def test_knowable_pages_are_fetched_concurrently_after_the_first(testapi: TestApi) -> None:
    testapi.state.latency = 0.1
    pages, _ = await fetch(testapi, MODES["page+total"], concurrency=10)
    assert len(pages) == 10
    first, *rest = testapi.requests_to(KIND)
    assert first.query["page"] == "1"
    assert first.done is not None and all(r.time >= first.done for r in rest)  # the total comes first
    assert testapi.state.max_in_flight == 9  # then every other page at once (10 allowed, 9 left)


async def test_concurrency_limit_holds_with_many_pages(testapi: TestApi) -> None:
    testapi.state.many = many_items(1000)
    testapi.state.latency = 0.005
    pages, counters = await fetch(testapi, MODES["offset+total"], concurrency=3)
    assert [i["id"] for p in pages for i in p] == list(range(1, 1001))
    assert counters.requests == 100
    assert testapi.state.max_in_flight == 3


async def test_the_rate_limit_holds_for_pages_fetched_ahead(testapi: TestApi) -> None:
    pages, _ = await fetch(testapi, MODES["page+total"], concurrency=10, source={"requestsPerSecond": 50})
    assert len(pages) == 10
    arrivals = sorted(r.time for r in testapi.requests_to(KIND))
    # The token bucket spaces the 10 requests 1/50 s apart at least (a lower bound: a slow machine
    # only spaces them more). 0.02 s allows for the first request's own way to the server.
    assert arrivals[-1] - arrivals[0] >= 9 / 50 - 0.02


@pytest.mark.parametrize(("concurrency", "page_size"), [(1, 10), (10, 10), (10, 5000), (1000, 1)])
def test_pages_ahead_is_bounded(concurrency: int, page_size: int) -> None:
    ahead = pages_ahead(concurrency, page_size)
    assert 2 <= ahead <= 64 and (ahead == 2 or ahead * page_size <= 20_000)


async def test_pages_requested_ahead_are_bounded(testapi: TestApi) -> None:
    testapi.state.many = many_items(500)  # 50 pages
    spec = source_spec(testapi.url, maxConcurrentRequests=2)
    limit = pages_ahead(2, SIZE)
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        pages = iter_pages(
            client, mapping_spec(KIND, dataPath=".items"), pagination_spec(**MODES["page+total"]), FetchCounters()
        )
        async with contextlib.aclosing(pages):
            consumed = 0
            async for _ in pages:
                consumed += 1
                # The consumer is slow: everything that may be requested ahead gets requested...
                await wait_for(lambda c=consumed: len(testapi.log) >= min(50, c + limit), "requests ahead")
                await asyncio.sleep(0.02)
                # ... and nothing more.
                assert len(testapi.log) == min(50, consumed + limit)
                if consumed == 5:
                    break
    assert len(testapi.log) == 5 + limit


# --------------------------------------------------------------------------- prefetch


async def test_prefetch_stops_at_the_first_short_page_and_discards_what_lies_beyond(testapi: TestApi) -> None:
    testapi.state.short_pages = {4: 3}  # page 4 ends the data for a sequential reader; pages 5+ still answer
    expected, _ = await fetch(testapi, {"type": "offset", "pageSize": SIZE})
    assert [len(p) for p in expected] == [10, 10, 10, 3]
    testapi.state.log.clear()

    pages, counters = await fetch(testapi, {"type": "offset", "pageSize": SIZE, "prefetch": 5}, concurrency=10)
    assert pages == expected
    assert (counters.pages, counters.items_fetched) == (4, 33)
    fetched = page_numbers(testapi)
    assert any(n > 4 for n in fetched)  # pages beyond the short one were requested ...
    assert max(fetched) <= 4 + 5  # ... at most prefetch beyond it ...
    assert counters.requests == len(fetched)  # ... and counted, but their items were never yielded


async def test_prefetch_follows_a_server_cap(testapi: TestApi) -> None:
    """Offsets advance by the items received: a server answering 4 items per page (of 10 asked)
    gets the offsets a sequential reader would ask for."""
    testapi.state.many = many_items(40)
    testapi.state.short_pages = {n: 4 for n in range(1, 20)}  # every page "short": no size is sent
    pagination = {"type": "offset", "pageSize": SIZE, "sizeParam": "", "prefetch": 4}
    pages, _ = await fetch(testapi, pagination, concurrency=5)
    assert [i["id"] for p in pages for i in p] == list(range(1, 41))


# --------------------------------------------------------------------------- cursor and links


@pytest.mark.parametrize(
    ("kind", "pagination", "data_path"),
    [
        ("/api/cursor/users", {"type": "cursor", "pageSize": 40, "cursorPath": ".meta.after_cursor"}, ".data"),
        ("/api/next-relative/users", {"type": "nextLink", "pageSize": 40, "sizeParam": "per"}, ".results"),
        ("/api/link/users", {"type": "linkHeader", "pageSize": 40, "sizeParam": "per_page"}, "."),
        ("/api/offset/users", {"type": "offset", "pageSize": 40}, ".data"),
    ],
    ids=["cursor", "nextLink", "linkHeader", "offset-sequential"],
)
async def test_the_next_request_starts_before_the_page_is_consumed(
    testapi: TestApi, kind: str, pagination: dict[str, Any], data_path: str
) -> None:
    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets()) as client:
        pages = iter_pages(
            client, mapping_spec(kind, dataPath=data_path), pagination_spec(**pagination), FetchCounters()
        )
        async with contextlib.aclosing(pages):
            await anext(pages)
            await wait_for(lambda: len(testapi.log) == 2, "the second page requested")  # without asking
            await anext(pages)
            await wait_for(lambda: len(testapi.log) == 3, "the third page requested")
            await asyncio.sleep(0.05)
            assert len(testapi.log) == 3  # one page ahead, no more


# --------------------------------------------------------------------------- failures and early stops


def unanswered(testapi: TestApi) -> list[int]:
    return sorted(n for n, r in zip(page_numbers(testapi), testapi.requests_to(KIND), strict=True) if r.status is None)


async def test_a_failure_cancels_the_requests_ahead(testapi: TestApi) -> None:
    testapi.state.page_faults = {3: [(400, {})]}
    # Page 3 fails after the later pages were sent; they would keep the test waiting if not cancelled.
    testapi.state.page_delay = {3: 0.2, **{n: 60.0 for n in range(4, 11)}}
    async with asyncio.timeout(20):
        with pytest.raises(HttpStatusError, match=r"page=3.* returned 400"):
            await fetch(testapi, MODES["page+total"], concurrency=10)
    await wait_for(lambda: testapi.state.in_flight == 0, "the slow requests cancelled")
    assert unanswered(testapi) == list(range(4, 11))
    assert testapi.state.cancelled == 7


async def test_preview_stopping_early_cancels_the_requests_ahead(testapi: TestApi) -> None:
    # The preview's limit is reached on page 2, when pages 3-10 have been sent.
    testapi.state.page_delay = {2: 0.2, **{n: 60.0 for n in range(3, 11)}}
    spec = source_spec(testapi.url, maxConcurrentRequests=10)
    async with await SourceClient.create(spec, StaticSecrets()) as client, asyncio.timeout(20):
        preview = await preview_mapping(
            client, "items", item_mapping(), pagination_spec(**MODES["page+total"]), limit=15
        )
    assert preview.result.outcome == "Succeeded" and len(preview.entities) == 15
    assert (preview.result.pages, preview.result.items_fetched) == (2, 20)
    await wait_for(lambda: testapi.state.in_flight == 0, "the slow requests cancelled")
    assert unanswered(testapi) == list(range(3, 11))
    assert testapi.state.cancelled == 8


async def test_max_pages_with_a_known_total_requests_no_more(testapi: TestApi) -> None:
    with pytest.raises(PaginationError, match=r"^stopped after 3 pages \(maxPages\)"):
        await fetch(testapi, {**MODES["page+total"], "maxPages": 3}, concurrency=10)
    assert sorted(page_numbers(testapi)) == [1, 2, 3]


async def test_an_identical_page_fails_parallel_fetching_too(testapi: TestApi) -> None:
    counters = FetchCounters()
    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets()) as client:
        mapping = mapping_spec("/fault/identical", dataPath=".items")
        pagination = pagination_spec(type="page", pageSize=10, totalPath=".total")
        with pytest.raises(PaginationError, match=r"page 2 of .*page=2.* is identical to page 1"):
            async for _ in iter_pages(client, mapping, pagination, counters):
                pass
    assert counters.pages == 1


# --------------------------------------------------------------------------- Retry-After


async def test_the_limiter_pause_holds_every_attempt() -> None:
    limiter = RequestLimiter(3)
    limiter.pause(0.2)
    deadline = limiter.not_before
    started: list[float] = []

    async def attempt() -> None:
        async with limiter.slot():
            started.append(time.monotonic())

    await asyncio.gather(*(attempt() for _ in range(5)))
    assert len(started) == 5 and min(started) >= deadline


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_a_429_on_one_page_pauses_the_others(testapi: TestApi, concurrency: int) -> None:
    testapi.state.page_faults = {3: [(429, {"Retry-After": "1"})]}
    testapi.state.latency = 0.05  # pages 3-5 in flight together, 6+ waiting for a slot
    source = {"retry": {"maxRetryAfterSeconds": 0.5, "backoffSeconds": 0.001, "maxBackoffSeconds": 0.01}}
    pages, _ = await fetch(testapi, MODES["page+total"], concurrency=concurrency, source=source)
    assert [i["id"] for p in pages for i in p] == list(range(1, 101))
    (limited,) = [r for r in testapi.requests_to(KIND) if r.status == 429]
    assert limited.done is not None
    # The client heard the 429 after the server answered it and then paused the whole source for
    # 0.5 s (Retry-After, capped): only requests already sent then (at most concurrency - 1 others)
    # may arrive during the pause.
    during = [r for r in testapi.requests_to(KIND) if limited.done < r.time < limited.done + 0.5]
    assert len(during) <= concurrency - 1, [(r.query, r.time - limited.done) for r in during]
    assert [r.status for r in testapi.requests_to(KIND)].count(200) == 10


# --------------------------------------------------------------------------- nested endpoints


async def test_children_pages_and_fan_out_share_the_limit(testapi: TestApi) -> None:
    testapi.state.child_delay = 0.01
    counters = FetchCounters()
    pages: list[list[Any]] = []
    spec = source_spec(testapi.url, maxConcurrentRequests=3)
    mapping = mapping_spec(
        "/api/tickets/{ticket_id}/comments",
        dataPath=".data",
        pathParameters={"ticket_id": {"endpoint": "/api/tickets", "dataPath": ".data", "field": ".id"}},
    )
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        pagination = pagination_spec(type="offset", pageSize=2, totalPath=".total")
        async for items in iter_pages(client, mapping, pagination, counters):
            pages.append(items)
    expected = sorted(c["id"] for t in TICKETS for c in comments_of(t["id"]))
    assert sorted(i["id"] for p in pages for i in p) == expected
    assert counters.parents == len(TICKETS)
    assert testapi.state.max_in_flight <= 3  # children, their pages and the parents: 3 at most


# --------------------------------------------------------------------------- the sync: counts and deletions


def item_mapping() -> Any:
    return mapping_spec(KIND, dataPath=".items")


@pytest.fixture
async def catalogs(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[Catalog] = []

    async def open_one(name: str) -> Catalog:
        c = await Catalog.open(tmp_path / f"{name}.db")
        opened.append(c)
        return c

    yield open_one
    for c in opened:
        await c.aclose()


def counts(r: Any) -> tuple[Any, ...]:
    """A sync result without its request count (requests ahead may be discarded) and duration."""
    return (
        r.outcome,
        r.reason,
        r.pages,
        r.items_fetched,
        r.items_filtered,
        r.entities,
        r.entities_upserted,
        r.entities_unchanged,
        r.entities_deleted,
        r.entities_failed,
    )


async def sync_twice(testapi: TestApi, catalog: Catalog, pagination: dict[str, Any]) -> list[Any]:
    """A first sync of 95 items (one repeated on a later page), then one with 4 items gone."""
    testapi.state.many = many_items(95)
    testapi.state.many[54] = dict(testapi.state.many[11])  # item 12 again on page 6: deduplicated
    spec = source_spec(testapi.url, maxConcurrentRequests=4, retry={"maxRetries": 0})
    results = []
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        for _ in range(2):
            r = await sync_mapping(
                client, "items", item_mapping(), pagination_spec(**pagination), catalog.sink, catalog.state, owner=OWNER
            )
            results.append(counts(r))
            testapi.state.many = [i for i in testapi.state.many if i["id"] not in (3, 40, 41, 77)]
    return results


async def entity_ids(catalog: Catalog) -> list[str]:
    return sorted(e["identifier"] for e in await catalog.sink.list_entities())


async def test_sync_counts_and_deletions_as_sequential(testapi: TestApi, catalogs: Any) -> None:
    reference = await catalogs("sequential")
    expected = await sync_twice(testapi, reference, SEQUENTIAL)
    assert expected[0][:2] == expected[1][:2] == ("Succeeded", None)
    assert expected[1][8] == 4  # deleted
    for mode, pagination in MODES.items():
        catalog = await catalogs(mode.replace("+", "-"))
        testapi.state.latency = 0.005
        assert await sync_twice(testapi, catalog, pagination) == expected, mode
        assert await entity_ids(catalog) == await entity_ids(reference), mode
        testapi.state.latency = 0.0


@pytest.mark.parametrize("mode", ["sequential", *KNOWABLE, "offset+prefetch"])
async def test_a_failure_on_page_7_of_10_deletes_nothing(testapi: TestApi, catalogs: Any, mode: str) -> None:
    pagination = SEQUENTIAL if mode == "sequential" else MODES[mode]
    catalog = await catalogs("c")
    spec = source_spec(testapi.url, maxConcurrentRequests=4, retry={"maxRetries": 0})
    async with await SourceClient.create(spec, StaticSecrets()) as client:

        async def sync() -> Any:
            return await sync_mapping(
                client, "items", item_mapping(), pagination_spec(**pagination), catalog.sink, catalog.state, owner=OWNER
            )

        first = await sync()
        assert (first.outcome, first.entities_upserted) == ("Succeeded", 100)
        testapi.state.many = many_items(100)[:50] + many_items(100)[60:]  # 10 items gone: would be deleted
        testapi.state.many.append({"id": 1000, "name": "new", "group": 0})
        testapi.state.page_faults = {7: [(500, {})]}
        testapi.state.latency = 0.005
        second = await sync()
    assert (second.outcome, second.reason, second.entities_deleted) == ("Failed", "HttpError", 0)
    assert "page=7" in second.message or "offset=60" in second.message
    # Pages 1-6 were used (and pushed, unchanged), nothing after the failure.
    assert (second.pages, second.items_fetched, second.entities_unchanged) == (6, 60, 60)
    assert len(await entity_ids(catalog)) == 100
