"""iter_pages against the real test API: dataPath, request shape, nested endpoints, fan-out, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters, FetchPlan, iter_pages, pages_ahead
from httpsync.errors import ConfigError, DataPathError, HttpStatusError, InvalidJqError, ResponseFormatError
from tests.testapi.fixtures import StaticSecrets, mapping_spec, pagination_spec, source_spec
from tests.testapi.server import ORGS, TICKETS, USERS, TestApi, comments_of, issues_of, repos_of

OFFSET = {"type": "offset", "pageSize": 3, "totalPath": ".total"}


async def fetch(
    testapi: TestApi,
    kind: str,
    pagination: dict[str, Any] | None = None,
    *,
    source: dict[str, Any] | None = None,
    **selector: Any,
) -> tuple[list[list[Any]], FetchCounters]:
    counters = FetchCounters()
    pages: list[list[Any]] = []
    spec = source_spec(testapi.url, **(source or {}))
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        async for items in iter_pages(
            client, mapping_spec(kind, **selector), pagination_spec(**(pagination or {})), counters
        ):
            pages.append(items)
    return pages, counters


def flat(pages: list[list[Any]]) -> list[Any]:
    return [item for page in pages for item in page]


# --------------------------------------------------------------------------- dataPath


async def test_data_path_not_an_array(testapi: TestApi) -> None:
    with pytest.raises(DataPathError) as info:
        await fetch(testapi, "/fault/object", dataPath=".data")
    assert str(info.value) == (
        f"selector.dataPath '.data' found object, not an array, in the response of GET {testapi.url}/fault/object; "
        "top-level keys: data, meta; set selector.singleObject: true to take the object as one item"
    )


async def test_default_data_path_on_an_object_says_what_to_do(testapi: TestApi) -> None:
    with pytest.raises(DataPathError, match=r"'\.' \(the default\) found object.*keys: data, meta.*'\[\.\]'"):
        await fetch(testapi, "/fault/object")


async def test_data_path_wrapping_an_object(testapi: TestApi) -> None:
    pages, _ = await fetch(testapi, "/fault/object", dataPath="[.data]")
    assert flat(pages) == [{"id": 1, "name": "one"}]


async def test_data_path_with_several_outputs(testapi: TestApi) -> None:
    with pytest.raises(DataPathError, match=r"gave 5 values, not one array.*wrap it in \[ \]"):
        await fetch(testapi, "/api/offset/users", dataPath=".data[]", queryParams={"limit": "5"})


async def test_data_path_runtime_error(testapi: TestApi) -> None:
    with pytest.raises(DataPathError, match=r"selector.dataPath '.data.x' failed on the response of GET .*: "):
        await fetch(testapi, "/api/offset/users", dataPath=".data.x")


async def test_invalid_data_path_fails_before_any_request(testapi: TestApi) -> None:
    with pytest.raises(InvalidJqError, match=r"^selector.dataPath: invalid jq"):
        await fetch(testapi, "/api/offset/users", dataPath=".data[")
    assert testapi.log == []


# --------------------------------------------------------------------------- request shape


async def test_method_params_headers_and_body_on_every_page(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi,
        "/api/offset/users",
        {"type": "offset", "pageSize": 100, "totalPath": ".total"},
        dataPath=".data",
        queryParams={"team": "a b"},
        headers={"X-Team": "blue"},
    )
    assert len(flat(pages)) == len(USERS)
    logged = testapi.requests_to("/api/offset")
    assert len(logged) == 3
    assert all(r.query["team"] == "a b" and r.headers["x-team"] == "blue" for r in logged)

    pages, _ = await fetch(testapi, "/api/echo", method="POST", body={"filter": {"ids": [1, 2]}}, headers={"X-A": "1"})
    (echo,) = flat(pages)
    assert echo["method"] == "POST" and echo["body"] == {"filter": {"ids": [1, 2]}} and echo["headers"]["x-a"] == "1"


async def test_pages_stream_as_they_arrive(testapi: TestApi) -> None:
    """Pages are yielded as they arrive, with at most ``pages_ahead`` requested ahead of the consumer
    (since issue 15 the rest of a known page list is fetched concurrently instead of one page per
    ask: exact counts in test_parallel_pages.py)."""
    counters = FetchCounters()
    spec = source_spec(testapi.url)
    ahead = pages_ahead(spec.max_concurrent_requests, 10)
    assert 2 + ahead < -(-len(USERS) // 10)  # fewer than all the pages
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        pages = iter_pages(
            client,
            mapping_spec("/api/offset/users", dataPath=".data"),
            pagination_spec(type="offset", pageSize=10, totalPath=".total"),
            counters,
        )
        first = await anext(pages)
        assert len(first) == 10
        assert len(testapi.log) <= 1 + ahead
        await anext(pages)
        assert len(testapi.log) <= 2 + ahead
        await pages.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    assert counters.pages == 2 and counters.items_fetched == 20
    assert len(testapi.log) <= counters.requests <= 2 + ahead  # no request after closing


# --------------------------------------------------------------------------- nested endpoints


def tickets_param(**fields: Any) -> dict[str, Any]:
    return {"endpoint": "/api/tickets", "dataPath": ".data", "field": ".id", **fields}


async def test_nested_endpoint_fetches_every_child_once(testapi: TestApi) -> None:
    pages, counters = await fetch(
        testapi,
        "/api/tickets/{ticket_id}/comments",
        OFFSET,
        dataPath=".data",
        pathParameters={"ticket_id": tickets_param()},
    )
    items = flat(pages)
    expected = [c["id"] for t in TICKETS for c in comments_of(t["id"])]
    assert sorted(i["id"] for i in items) == sorted(expected)
    assert all(i["id"].split("-")[0] == str(i["__ticket_id"]) for i in items)
    assert all(isinstance(i["__ticket_id"], int) for i in items)
    # The parents were paginated fully (25 tickets by 3), each ticket's comments too.
    parent_requests = [r for r in testapi.log if r.path == "/api/tickets"]
    assert len(parent_requests) == 9
    assert counters.parents == len(TICKETS)
    assert counters.items_fetched == len(expected)
    assert counters.requests == len(testapi.log)
    assert counters.parent_pages == 9


async def test_nested_filter_must_be_exactly_true(testapi: TestApi) -> None:
    pages, counters = await fetch(
        testapi,
        "/api/tickets/{ticket_id}/comments",
        OFFSET,
        dataPath=".data",
        pathParameters={"ticket_id": tickets_param(filter='if .open then true else "yes" end')},
    )
    open_ids = {t["id"] for t in TICKETS if t["open"]}
    assert {i["__ticket_id"] for i in flat(pages)} <= open_ids
    assert counters.parents == len(open_ids)


async def test_nested_values_are_url_encoded(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi,
        "/api/tickets/{slug}/comments",
        OFFSET,
        dataPath=".data",
        pathParameters={"slug": tickets_param(field=".slug")},
    )
    assert len(flat(pages)) == sum(len(comments_of(t["id"])) for t in TICKETS)
    raw = {r.raw_path.split("?")[0] for r in testapi.log if r.path.endswith("/comments")}
    assert "/api/tickets/t5%2Fa%20b%3F%26%23/comments" in raw
    assert {i["__slug"] for i in flat(pages)} <= {t["slug"] for t in TICKETS}


async def test_two_levels_resolved_in_dependency_order(testapi: TestApi) -> None:
    pages, counters = await fetch(
        testapi,
        "/api/orgs/{org}/repos/{repo}/issues",
        OFFSET,
        dataPath=".data",
        pathParameters={
            # Declared child first: the order comes from the endpoints' placeholders.
            "repo": {"endpoint": "/api/orgs/{org}/repos", "dataPath": ".data", "field": ".name"},
            "org": {"endpoint": "/api/orgs", "dataPath": ".data", "field": ".login"},
        },
    )
    items = flat(pages)
    expected = {
        (o["login"], r["name"], i["number"])
        for o in ORGS
        for r in repos_of(o["login"])
        for i in issues_of(o["login"], r["name"])
    }
    got = [(i["__org"], i["__repo"], i["number"]) for i in items]
    assert sorted(got) == sorted(expected)
    raw = {r.raw_path.split("?")[0] for r in testapi.log}
    assert "/api/orgs/c%2Fd/repos" in raw
    assert "/api/orgs/big%20corp/repos/r%232/issues" in raw
    assert "/api/orgs/c%2Fd/repos/r%203/issues" in raw
    assert counters.parents == 9


async def test_booleans_and_numbers_in_paths(testapi: TestApi) -> None:
    pages, _ = await fetch(
        testapi,
        "/api/flags/{on}/{n}/items",
        pathParameters={
            "on": {"endpoint": "/api/flags", "field": ".on"},
            "n": {"endpoint": "/api/flags", "field": ".n"},
        },
    )
    got = sorted((i["on"], i["n"], i["__on"], i["__n"]) for i in flat(pages))
    assert got == sorted(
        [
            ("true", "2", True, 2.0),
            ("true", "3.5", True, 3.5),
            ("false", "2", False, 2.0),
            ("false", "3.5", False, 3.5),
        ]
    )
    assert len([r for r in testapi.log if r.path == "/api/flags"]) == 2  # independent values fetched once


async def test_a_failing_child_fails_the_whole_fetch(testapi: TestApi) -> None:
    with pytest.raises(HttpStatusError, match=r"/api/tickets/13000/comments.* returned 404 Not Found"):
        await fetch(
            testapi,
            "/api/tickets/{ticket_id}/comments",
            OFFSET,
            dataPath=".data",
            pathParameters={"ticket_id": tickets_param(field="if .id == 13 then 13000 else .id end")},
        )


async def test_a_failing_parent_fails_the_whole_fetch(testapi: TestApi) -> None:
    with pytest.raises(DataPathError, match=r"selector.pathParameters.org.dataPath '.data' found object"):
        await fetch(
            testapi,
            "/api/orgs/{org}/repos",
            dataPath=".data",
            pathParameters={"org": {"endpoint": "/fault/object", "dataPath": ".data", "field": ".login"}},
        )


async def test_a_non_scalar_parameter_value_is_an_error(testapi: TestApi) -> None:
    with pytest.raises(ResponseFormatError, match=r"selector.pathParameters.ticket_id.field '.' gave an object"):
        await fetch(
            testapi,
            "/api/tickets/{ticket_id}/comments",
            OFFSET,
            dataPath=".data",
            pathParameters={"ticket_id": tickets_param(field=".")},
        )


async def test_fan_out_is_concurrent_and_bounded(testapi: TestApi) -> None:
    testapi.state.child_delay = 0.05
    pages, counters = await fetch(
        testapi,
        "/api/tickets/{ticket_id}/comments",
        {"type": "offset", "pageSize": 50, "totalPath": ".total"},
        source={"maxConcurrentRequests": 3},
        dataPath=".data",
        pathParameters={"ticket_id": tickets_param()},
    )
    assert counters.parents == len(TICKETS)
    assert len(flat(pages)) == sum(len(comments_of(t["id"])) for t in TICKETS)
    assert 2 <= testapi.state.max_in_flight <= 3


async def test_closing_early_cancels_the_fan_out(testapi: TestApi) -> None:
    testapi.state.child_delay = 0.02
    before = len(asyncio.all_tasks())
    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets()) as client:
        pages = iter_pages(
            client,
            mapping_spec(
                "/api/tickets/{ticket_id}/comments", dataPath=".data", pathParameters={"ticket_id": tickets_param()}
            ),
            pagination_spec(**OFFSET),
            FetchCounters(),
        )
        async for _ in pages:
            break
        await pages.aclose()  # type: ignore[attr-defined]
    assert len(asyncio.all_tasks()) == before


# --------------------------------------------------------------------------- compile errors


def plan(kind: str, **selector: Any) -> FetchPlan:
    return FetchPlan.compile(mapping_spec(kind, **selector), pagination_spec())


def test_invalid_parameter_jq_names_the_field() -> None:
    with pytest.raises(InvalidJqError, match=r"^selector.pathParameters.ticket_id.field: invalid jq"):
        plan("/t/{ticket_id}/c", pathParameters={"ticket_id": {"endpoint": "/t", "field": ".id |||"}})
    with pytest.raises(InvalidJqError, match=r"^selector.pathParameters.ticket_id.filter: invalid jq"):
        plan("/t/{ticket_id}/c", pathParameters={"ticket_id": {"endpoint": "/t", "filter": "(("}})


def test_a_placeholder_without_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"kind '/o/\{org\}/r/\{repo\}' uses the placeholder \{repo\}"):
        plan("/o/{org}/r/{repo}", pathParameters={"org": {"endpoint": "/o"}})
    with pytest.raises(
        ConfigError, match=r"selector.pathParameters.repo.endpoint '/x/\{y\}' uses the placeholder \{y\}"
    ):
        plan("/r/{repo}", pathParameters={"repo": {"endpoint": "/x/{y}"}})


def test_a_dependency_cycle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cycle \(a -> b -> a\)"):
        plan("/x/{a}", pathParameters={"a": {"endpoint": "/a/{b}"}, "b": {"endpoint": "/b/{a}"}})


def test_dependency_order() -> None:
    compiled = plan(
        "/i/{issue}",
        pathParameters={
            "issue": {"endpoint": "/o/{org}/r/{repo}/i"},
            "repo": {"endpoint": "/o/{org}/r"},
            "org": {"endpoint": "/o"},
        },
    )
    assert [p.name for p in compiled.parameters] == ["org", "repo", "issue"]


async def test_a_kind_on_another_host_is_a_config_error(testapi: TestApi) -> None:
    with pytest.raises(ConfigError, match="another host"):
        await fetch(testapi, "https://elsewhere.test/users")
