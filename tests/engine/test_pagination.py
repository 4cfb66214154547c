"""Every pagination style end to end against the real test API, stop conditions and loop guards."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters, iter_pages
from httpsync.engine.pagination import PaginationPlan, find_link, parse_link_header
from httpsync.errors import HttpStatusError, InvalidJqError, PaginationError
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec
from tests.testapi.server import CAP, MID500, USERS, TestApi

ALL_IDS = [u["id"] for u in USERS]


async def fetch(
    testapi: TestApi, kind: str, pagination: dict[str, Any], *, source: dict[str, Any] | None = None, **selector: Any
) -> tuple[list[list[Any]], FetchCounters]:
    counters = FetchCounters()
    pages: list[list[Any]] = []
    async with await SourceClient.create(source_spec(testapi.url, **(source or {})), StaticSecrets()) as client:
        async for items in iter_pages(client, mapping_spec(kind, **selector), pagination_spec(**pagination), counters):
            pages.append(items)
    return pages, counters


def ids(pages: list[list[Any]]) -> list[Any]:
    return [item["id"] for page in pages for item in page]


def assert_each_user_once(pages: list[list[Any]]) -> None:
    got = ids(pages)
    assert sorted(got) == ALL_IDS, f"missing {set(ALL_IDS) - set(got)}; duplicates {Counter(got) - Counter(set(got))}"


@pytest.mark.parametrize(
    ("kind", "pagination", "selector", "requests"),
    [
        pytest.param(
            "/api/offset/users",
            {"type": "offset", "pageSize": 50, "totalPath": ".total"},
            {"dataPath": ".data"},
            5,
            id="offset-total",
        ),
        pytest.param("/api/offset-array/users", {"type": "offset", "pageSize": 50}, {}, 5, id="offset-short-page"),
        pytest.param(
            "/api/offset-capped/users",
            {"type": "offset", "pageSize": 100, "totalPath": "total"},
            {"dataPath": "data"},
            -(-len(USERS) // CAP),
            id="offset-server-cap",
        ),
        pytest.param(
            "/api/page/users",
            {"type": "page", "pageSize": 50, "lastPagePath": ".last"},
            {"dataPath": ".items"},
            5,
            id="page-lastPagePath",
        ),
        pytest.param(
            "/api/page/users", {"type": "page", "pageSize": 50}, {"dataPath": ".items"}, 5, id="page-short-page"
        ),
        pytest.param(
            "/api/cursor/users",
            {"type": "cursor", "pageSize": 100, "cursorPath": "meta.after_cursor", "hasMorePath": "meta.has_more"},
            {"dataPath": ".data"},
            -(-len(USERS) // CAP),
            id="cursor-server-cap",
        ),
        pytest.param(
            "/api/cursor-noflag/users",
            {"type": "cursor", "pageSize": 60, "cursorPath": ".next_cursor"},
            {"dataPath": ".data"},
            4,
            id="cursor-without-has-more",
        ),
        pytest.param(
            "/api/odata/users",
            {"type": "nextLink", "pageSize": 60, "sizeParam": "$top"},
            {"dataPath": ".value"},
            4,
            id="nextLink-odata-default-path",
        ),
        pytest.param(
            "/api/next-relative/users",
            {"type": "nextLink", "pageSize": 25, "sizeParam": "per", "nextLinkPath": ".next"},
            {"dataPath": ".results"},
            10,
            id="nextLink-relative",
        ),
        pytest.param(
            "/api/next-relative/users",
            {"type": "nextLink", "pageSize": 25, "sizeParam": "per"},
            {"dataPath": ".results"},
            10,
            id="nextLink-default-falls-back-to-next",
        ),
        pytest.param(
            "/api/link/users", {"type": "linkHeader", "pageSize": 50, "sizeParam": "per_page"}, {}, 5, id="linkHeader"
        ),
    ],
)
async def test_every_item_exactly_once(
    testapi: TestApi, kind: str, pagination: dict[str, Any], selector: dict[str, Any], requests: int
) -> None:
    pages, counters = await fetch(testapi, kind, pagination, **selector)
    assert_each_user_once(pages)
    assert len(testapi.requests_to(kind)) == requests
    assert counters.requests == requests
    assert counters.pages == len(pages) == requests
    assert counters.items_fetched == len(USERS)


async def test_offset_advances_by_items_received(testapi: TestApi) -> None:
    await fetch(
        testapi,
        "/api/offset-capped/users",
        {"type": "offset", "pageSize": 100, "totalPath": ".total"},
        dataPath=".data",
    )
    offsets = [r.query["offset"] for r in testapi.requests_to("/api/offset-capped")]
    assert offsets == [str(n) for n in range(0, len(USERS), CAP)]
    assert {r.query["limit"] for r in testapi.requests_to("/api/offset-capped")} == {"100"}


async def test_offset_stops_on_an_empty_page(testapi: TestApi) -> None:
    pages, _ = await fetch(testapi, "/api/offset-array/users", {"type": "offset", "pageSize": 79})
    assert_each_user_once(pages)
    assert [len(p) for p in pages] == [79, 79, 79, 0]


async def test_total_path_stops_without_an_extra_request(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi, "/api/offset/users", {"type": "offset", "pageSize": 79, "totalPath": ".total"}, dataPath=".data"
    )
    assert [len(p) for p in pages] == [79, 79, 79]


async def test_empty_size_param_sends_no_size(testapi: TestApi) -> None:
    pages, _ = await fetch(testapi, "/api/offset-array/users", {"type": "offset", "pageSize": 5, "sizeParam": ""})
    assert_each_user_once(pages)  # pages of the server's default size (20): only the empty page stops
    assert all("limit" not in r.query for r in testapi.requests_to("/api/offset-array"))


async def test_page_params_and_start_page(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi,
        "/api/page/users",
        {"type": "page", "pageSize": 100, "startPage": 2, "paginationParam": "page", "sizeParam": "size"},
        dataPath=".items",
    )
    assert ids(pages) == ALL_IDS[100:]
    assert [r.query["page"] for r in testapi.requests_to("/api/page")] == ["2", "3"]


async def test_cursor_requests(testapi: TestApi) -> None:
    await fetch(
        testapi,
        "/api/cursor/users",
        {"type": "cursor", "pageSize": 40, "cursorPath": ".meta.after_cursor", "paginationParam": "cursor"},
        dataPath=".data",
        queryParams={"sort": "id"},
    )
    logged = testapi.requests_to("/api/cursor")
    assert "cursor" not in logged[0].query
    assert all(r.query["sort"] == "id" and r.query["limit"] == "40" for r in logged)
    assert len({r.query.get("cursor") for r in logged}) == len(logged)


async def test_next_link_keeps_its_own_params(testapi: TestApi) -> None:
    await fetch(
        testapi,
        "/api/odata/users",
        {"type": "nextLink", "pageSize": 100, "sizeParam": "$top"},
        dataPath=".value",
        queryParams={"$top": "100", "$filter": "all"},
    )
    first, *rest = testapi.requests_to("/api/odata")
    assert first.query == {"$top": "100", "$filter": "all"}
    assert rest and all("$filter" not in r.query and r.query["api-version"] == "7.1" for r in rest)
    assert all("$skiptoken" in r.query for r in rest)


async def test_relative_next_links_are_resolved(testapi: TestApi) -> None:
    await fetch(
        testapi,
        "/api/next-relative/users",
        {"type": "nextLink", "pageSize": 60, "sizeParam": "per"},
        dataPath=".results",
    )
    paths = [r.raw_path for r in testapi.requests_to("/api/next-relative")]
    assert paths == [
        "/api/next-relative/users?per=60",
        "/api/next-relative/users?page=2&per=60&sig=s2",
        "/api/next-relative/users?page=3&per=60&sig=s3",
        "/api/next-relative/users?page=4&per=60&sig=s4",
    ]


async def test_none_fetches_one_page(testapi: TestApi) -> None:
    pages, counters = await fetch(testapi, "/api/offset-array/users", {"type": "none"})
    assert ids(pages) == ALL_IDS[:20]
    assert counters.requests == 1


# --------------------------------------------------------------------------- loop guards


async def test_max_pages(testapi: TestApi) -> None:
    with pytest.raises(PaginationError) as info:
        await fetch(
            testapi,
            "/fault/endless",
            {"type": "cursor", "cursorPath": ".meta.after_cursor", "maxPages": 5},
            dataPath=".data",
        )
    assert str(info.value).startswith("stopped after 5 pages (maxPages): ")
    assert len(testapi.requests_to("/fault/endless")) == 5


async def test_max_pages_is_not_an_error_when_the_last_page_is_reached(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi, "/api/offset/users", {"type": "offset", "pageSize": 100, "maxPages": 3}, dataPath=".data"
    )
    assert_each_user_once(pages)


async def test_repeated_cursor(testapi: TestApi) -> None:
    with pytest.raises(PaginationError, match=r"page 3 of .* returned the cursor 'A' again \(page 1 already"):
        await fetch(
            testapi, "/fault/repeat-cursor", {"type": "cursor", "cursorPath": ".meta.after_cursor"}, dataPath=".data"
        )
    assert len(testapi.requests_to("/fault/repeat-cursor")) == 3


async def test_identical_page(testapi: TestApi) -> None:
    with pytest.raises(PaginationError, match=r"page 2 of .*page=2.* is identical to page 1"):
        await fetch(testapi, "/fault/identical", {"type": "page", "pageSize": 10}, dataPath=".items")


async def test_repeated_next_link(testapi: TestApi) -> None:
    with pytest.raises(PaginationError, match=r"links to .*/fault/repeat-link\?p=1 again"):
        await fetch(testapi, "/fault/repeat-link", {"type": "nextLink"}, dataPath=".value")


async def test_a_500_mid_pagination_fails_the_fetch(testapi: TestApi) -> None:
    pages: list[list[Any]] = []
    spec = source_spec(testapi.url, retry={"maxRetries": 1, "backoffSeconds": 0.001})
    mapping = mapping_spec("/fault/mid500", dataPath=".data")
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        with pytest.raises(HttpStatusError, match=r"offset=100.* returned 500 Internal Server Error \(2 attempts\)"):
            async for items in iter_pages(
                client, mapping, pagination_spec(type="offset", pageSize=50), FetchCounters()
            ):
                pages.append(items)
    assert len(ids(pages)) == MID500


async def test_a_next_link_to_another_host_is_refused(testapi: TestApi) -> None:
    plan = PaginationPlan.compile(pagination_spec(type="nextLink"))
    paginator = plan.start(f"{testapi.url}/x", {})
    paginator.first_request()
    response = httpx.Response(200, content=b"{}")
    with pytest.raises(PaginationError, match="another host"):
        paginator.next_request(response, {"next": "https://elsewhere.test/steal"}, [1])


async def test_a_non_string_next_link_is_an_error() -> None:
    paginator = PaginationPlan.compile(pagination_spec(type="nextLink")).start("http://h/x")
    paginator.first_request()
    with pytest.raises(PaginationError, match=r"gave a number, not a URL"):
        paginator.next_request(httpx.Response(200, content=b"{}"), {"next": 2}, [1])


def test_invalid_jq_names_the_field() -> None:
    with pytest.raises(InvalidJqError, match=r"^pagination.cursorPath: invalid jq"):
        PaginationPlan.compile(pagination_spec(type="cursor", cursorPath=".meta.[[["))


def test_has_more_false_stops_a_cursor() -> None:
    spec = pagination_spec(type="cursor", cursorPath=".c", hasMorePath=".more")
    paginator = PaginationPlan.compile(spec).start("http://h/x")
    paginator.first_request()
    assert paginator.next_request(httpx.Response(200, content=b"1"), {"c": "n", "more": False}, [1]) is None
    assert paginator.next_request(httpx.Response(200, content=b"2"), {"c": "n", "more": True}, [1]) is not None


def test_explicit_signal_wins_over_a_short_page() -> None:
    spec = pagination_spec(type="page", pageSize=100, hasMorePath=".has_more")
    paginator = PaginationPlan.compile(spec).start("http://h/x", {"q": "1"})
    assert paginator.first_request() == ("http://h/x", {"q": "1", "page": "1", "size": "100"})
    nxt = paginator.next_request(httpx.Response(200, content=b"a"), {"has_more": True}, [1] * 30)
    assert nxt == ("http://h/x", {"q": "1", "page": "2", "size": "100"})


# --------------------------------------------------------------------------- Link header parsing


def test_link_header_parsing() -> None:
    header = (
        '<https://h/x?page=1&a=b,c>; rel="first"; title="a, b; c", '
        "<https://h/x?page=3>;rel=next , <https://h/x?page=9>; rel=\"last prev\"; title*=UTF-8'de'n%c3%a4chstes"
    )
    links = parse_link_header([header, '<https://h/y>; rel="alternate next"'])
    assert [t for t, _ in links] == [
        "https://h/x?page=1&a=b,c",
        "https://h/x?page=3",
        "https://h/x?page=9",
        "https://h/y",
    ]
    assert links[0][1] == {"rel": "first", "title": "a, b; c"}
    assert find_link(links, "next") == "https://h/x?page=3"
    assert find_link(links, "PREV") == "https://h/x?page=9"
    assert find_link(links, "alternate") == "https://h/y"
    assert find_link(links, "up") is None


def test_link_header_tolerates_garbage() -> None:
    links = parse_link_header(['garbage, <https://h/2>; rel="next"; title="say \\"hi\\""', "", "<unterminated"])
    assert links == [("https://h/2", {"rel": "next", "title": 'say "hi"'})]


def test_link_rel_is_configurable() -> None:
    paginator = PaginationPlan.compile(pagination_spec(type="linkHeader", linkRel="more")).start("http://h/x")
    paginator.first_request()
    response = httpx.Response(200, headers={"Link": '</x?p=2>; rel="next", </x?p=3>; rel="more"'}, content=b"[]")
    assert paginator.next_request(response, [], [1]) == ("http://h/x?p=3", {})


# --------------------------------------------------------------------------- fetching ahead (issue 15)


def response(content: str) -> httpx.Response:
    return httpx.Response(200, content=content.encode())


def test_last_page_path_may_give_the_last_page_number() -> None:
    paginator = PaginationPlan.compile(pagination_spec(type="page", pageSize=2, lastPagePath=".last")).start("http://h")
    paginator.first_request()
    assert paginator.next_request(response("1"), {"last": 3}, [1, 2]) == ("http://h", {"page": "2", "size": "2"})
    assert paginator.next_request(response("2"), {"last": 3.0}, [1, 2]) == ("http://h", {"page": "3", "size": "2"})
    assert paginator.next_request(response("3"), {"last": 3}, [1, 2]) is None
    # 0 and 1 keep their meaning of false and true.
    paginator = PaginationPlan.compile(pagination_spec(type="page", pageSize=2, lastPagePath=".last")).start("http://h")
    paginator.first_request()
    assert paginator.next_request(response("1"), {"last": 0}, [1, 2]) is not None
    assert paginator.next_request(response("2"), {"last": 1}, [1, 2]) is None


async def test_last_page_number_end_to_end(testapi: TestApi) -> None:
    pages, counters = await fetch(
        testapi, "/api/many/items", {"type": "page", "pageSize": 10, "lastPagePath": ".last_page"}, dataPath=".items"
    )
    assert [i["id"] for p in pages for i in p] == list(range(1, 101))
    assert counters.requests == 10


def upcoming_after_first(spec: dict[str, Any], body: Any, items: int, limit: int = 100) -> list[dict[str, str]]:
    paginator = PaginationPlan.compile(pagination_spec(**spec)).start("http://h", {"q": "1"})
    paginator.first_request()
    assert paginator.next_request(response("1"), body, list(range(items))) is not None
    return [params for _, params in paginator.upcoming(limit)]


def test_upcoming_with_a_total() -> None:
    offset = {"type": "offset", "pageSize": 10, "totalPath": ".total"}
    got = upcoming_after_first(offset, {"total": 45}, 10)  # next: offset 10; then 20, 30, 40
    assert got == [{"q": "1", "offset": str(n), "limit": "10"} for n in (20, 30, 40)]
    assert upcoming_after_first(offset, {"total": 45}, 10, limit=2) == got[:2]
    assert upcoming_after_first({**offset, "maxPages": 3}, {"total": 45}, 10) == got[:1]  # pages 1, 2, 3
    assert upcoming_after_first(offset, {"total": 20}, 10) == []
    # A server capping the page size: offsets advance by what it answers.
    capped = upcoming_after_first({**offset, "pageSize": 100}, {"total": 100}, 40)
    assert [p["offset"] for p in capped] == ["80"]
    page = {"type": "page", "pageSize": 10, "totalPath": ".total"}
    assert [p["page"] for p in upcoming_after_first(page, {"total": 41}, 10)] == ["3", "4", "5"]
    explicit = {**page, "hasMorePath": ".more"}  # the total still plans the pages when a flag decides
    assert [p["page"] for p in upcoming_after_first(explicit, {"total": 30, "more": True}, 10)] == ["3"]


def test_upcoming_with_a_last_page_number() -> None:
    spec = {"type": "page", "pageSize": 10, "lastPagePath": ".last"}
    assert [p["page"] for p in upcoming_after_first(spec, {"last": 4}, 10)] == ["3", "4"]


def test_upcoming_without_a_total_is_the_prefetch() -> None:
    assert upcoming_after_first({"type": "offset", "pageSize": 10}, {}, 10) == []
    got = upcoming_after_first({"type": "offset", "pageSize": 10, "prefetch": 3}, {}, 10)
    assert [p["offset"] for p in got] == ["20", "30", "40"]
    got = upcoming_after_first({"type": "page", "pageSize": 10, "prefetch": 16}, {}, 10, limit=2)
    assert [p["page"] for p in got] == ["3", "4"]


def test_upcoming_is_empty_for_cursors_and_links() -> None:
    cursor = {"type": "cursor", "cursorPath": ".c"}
    assert upcoming_after_first(cursor, {"c": "x"}, 10) == []
    assert upcoming_after_first({"type": "nextLink"}, {"next": "/p2"}, 10) == []


def test_prefetch_is_only_for_offset_and_page() -> None:
    with pytest.raises(ValueError, match="prefetch is only valid for offset and page pagination"):
        pagination_spec(type="cursor", cursorPath=".c", prefetch=2)
    with pytest.raises(ValueError, match="less than or equal to 16"):
        pagination_spec(type="offset", prefetch=17)


def test_upcoming_is_bounded_whatever_the_total() -> None:
    spec = {"type": "page", "pageSize": 10, "totalPath": ".total"}
    for total in (1e300, float("inf")):  # (jq reads Infinity as the largest double)
        assert [p["page"] for p in upcoming_after_first(spec, {"total": total}, 10, limit=3)] == ["3", "4", "5"]
