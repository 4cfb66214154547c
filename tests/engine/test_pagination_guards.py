"""The pagination guards that end a run the API would not end: ``maxPages`` and empty pages that
keep announcing more. The page that reaches a guard is yielded and counted, so the message
("stopped after 3 pages") and the counts agree; then the run fails with PaginationLoop."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters, iter_pages
from httpsync.engine.pagination import MAX_EMPTY_PAGES
from httpsync.errors import PaginationError
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec


class Api(LoopbackServer):
    """``/endless``: one item per page, always more. ``/empty-more?items=N``: N items on the first
    page, then empty pages whose hasMore stays true (the cursor changes, so no page repeats)."""

    def __init__(self) -> None:
        self.requests = 0
        app = web.Application()
        app.router.add_get("/endless", self._endless)
        app.router.add_get("/empty-more", self._empty_more)
        super().__init__(app)

    async def _endless(self, request: web.Request) -> web.Response:
        self.requests += 1
        n = int(request.query.get("cursor", "0"))
        return web.json_response({"data": [{"id": n}], "next": str(n + 1), "more": True})

    async def _empty_more(self, request: web.Request) -> web.Response:
        self.requests += 1
        n = int(request.query.get("cursor", "0")) + int(request.query.get("page", "1")) - 1
        first = int(request.query.get("items", "2"))
        data = [{"id": i} for i in range(first)] if n == 0 else []
        return web.json_response({"data": data, "next": str(n + 1), "more": True})


@pytest.fixture
async def api() -> Any:
    async with Api() as server:
        yield server


async def run(api: Api, kind: str, **pagination: Any) -> tuple[list[list[Any]], FetchCounters, PaginationError]:
    counters = FetchCounters()
    pages: list[list[Any]] = []
    style = {"type": "cursor", "cursorPath": ".next"} if "prefetch" not in pagination else {"type": "page"}
    spec = pagination_spec(**style, hasMorePath=".more", **pagination)
    async with await SourceClient.create(source_spec(api.url), StaticSecrets()) as client:
        with pytest.raises(PaginationError) as info:
            async for items in iter_pages(client, mapping_spec(kind, dataPath=".data"), spec, counters):
                pages.append(items)
    return pages, counters, info.value


async def test_max_pages_counts_and_yields_the_last_page_it_names(api: Api) -> None:
    pages, counters, error = await run(api, "/endless", maxPages=3)
    assert str(error).startswith("stopped after 3 pages (maxPages): ")
    assert error.reason == "PaginationLoop"
    assert [p[0]["id"] for p in pages] == [0, 1, 2]  # page 3's items are not dropped
    assert (counters.pages, counters.items_fetched, api.requests) == (3, 3, 3)


@pytest.mark.parametrize("style", [{}, {"prefetch": 4}])  # cursor; page fetching ahead
async def test_empty_pages_that_announce_more_stop_the_run(api: Api, style: dict[str, Any]) -> None:
    pages, counters, error = await run(api, "/empty-more?items=2", maxPages=10_000, **style)
    assert error.reason == "PaginationLoop"
    assert f"the last {MAX_EMPTY_PAGES} pages" in str(error) and "were empty but still announced more" in str(error)
    assert str(error).startswith(f"stopped after {1 + MAX_EMPTY_PAGES} pages")
    assert [len(p) for p in pages] == [2] + [0] * MAX_EMPTY_PAGES
    assert (counters.pages, counters.items_fetched) == (1 + MAX_EMPTY_PAGES, 2)
    assert api.requests < 20  # not maxPages requests


async def test_fewer_empty_pages_in_a_row_are_not_a_loop(api: Api) -> None:
    # One full page, then MAX_EMPTY_PAGES - 1 empty ones: not yet a loop; maxPages ends the run.
    _, counters, error = await run(api, "/empty-more?items=1", maxPages=MAX_EMPTY_PAGES)
    assert "(maxPages)" in str(error)
    assert counters.pages == MAX_EMPTY_PAGES
