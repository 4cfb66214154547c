"""Mapping features Port's Ocean HTTP integration has, synced from a loopback API into the catalog:
itemsToParseName, itemsToParseTopLevelTransform, selector.singleObject, search-query relations and
team, and a parent endpoint shared by several nested mappings fetched once per sync."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from httpsync.api.models import EndpointResult, HttpEndpointMappingSpec, HttpSourceSpec
from httpsync.engine.runner import SourceMapping, sync_source
from httpsync.sinks import Catalog
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

TEAMS = [
    {"id": "a", "name": "Alpha", "members": [{"login": "u1"}, {"login": "u2"}], "meta": {"tags": ["x", "y"]}},
    {"id": "b", "name": "Beta", "members": [{"login": "u3"}], "meta": {"tags": ["z"]}},
]


class OceanLikeApi(LoopbackServer):
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.fail_teams = 0  # answer /teams with a 400 this many times
        self.hold_second_page = False  # answer /teams?offset=1 only once someone asked for /teams/a/people
        self.people_asked = asyncio.Event()
        app = web.Application()
        app.router.add_get("/teams", self.teams)
        app.router.add_get("/teams/{id}/repos", self.repos)
        app.router.add_get("/teams/{id}/people", self.people)
        app.router.add_get("/teams/{id}/named/{name}", self.named)
        app.router.add_get("/by/{name}/of/{id}", self.named)
        app.router.add_get("/status", self.status)
        app.router.add_get("/wrapped", self.wrapped)
        app.router.add_get("/list", self.list)
        super().__init__(app)

    async def teams(self, request: web.Request) -> web.Response:
        self.hits[request.path_qs] += 1
        if self.fail_teams:
            self.fail_teams -= 1
            return web.json_response({"error": "bad"}, status=400)
        offset = int(request.query.get("offset", 0))
        if offset == 1 and self.hold_second_page:
            try:  # a deadlock guard, not a timing: the test fails if nobody reads page 1 before page 2 arrives
                await asyncio.wait_for(self.people_asked.wait(), 10)
            except TimeoutError:
                return web.json_response({"error": "nobody read the first page"}, status=500)
        return web.json_response(_window(request, TEAMS))

    async def repos(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        team = request.match_info["id"]
        return web.json_response(_window(request, [{"name": f"{team}-r{i}"} for i in (1, 2)]))

    async def people(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        self.people_asked.set()
        team = next(t for t in TEAMS if t["id"] == request.match_info["id"])
        return web.json_response(_window(request, team["members"]))

    async def named(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.json_response([{"name": f"{request.match_info['id']}:{request.match_info['name']}"}])

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "1.2.3", "healthy": True})

    async def wrapped(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {"id": 7, "name": "seven"}})

    async def list(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.json_response({"data": [{"id": 1, "name": "one"}]})


def _window(request: web.Request, items: list[Any]) -> list[Any]:
    offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 100))
    return items[offset : offset + limit]


@pytest.fixture
async def api() -> AsyncIterator[OceanLikeApi]:
    async with OceanLikeApi() as a:
        yield a


def mapping(kind: str, mappings: dict[str, Any], **fields: Any) -> HttpEndpointMappingSpec:
    return HttpEndpointMappingSpec.model_validate(
        {"sourceRef": {"name": "src"}, "kind": kind, "mappings": {"blueprint": '"thing"', **mappings}, **fields}
    )


async def sync(
    catalog: Catalog, source: HttpSourceSpec, *specs: HttpEndpointMappingSpec, concurrency: int = 4
) -> list[EndpointResult]:
    mappings = [SourceMapping(f"m{i}", f"ns/m{i}", spec) for i, spec in enumerate(specs)]
    return await sync_source(source, mappings, StaticSecrets(), catalog.sink, catalog.state, concurrency=concurrency)


async def entities(catalog: Catalog) -> dict[str, dict[str, Any]]:
    return {e["identifier"]: e for e in await catalog.sink.list_entities()}


def props(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: e["properties"] for k, e in found.items()}


# --------------------------------------------------------------------------- itemsToParse


MEMBER_PROPS = {"team": ".id", "viaItem": ".item.login", "count": ".members | length", "tags": ".meta.tags"}


@pytest.mark.parametrize("items", [".members", ".members | map(.)"])  # Python and jq paths
async def test_items_to_parse_name(api: OceanLikeApi, catalog: Catalog, items: str) -> None:
    spec = mapping(
        "/teams",
        {"identifier": ".member.login", "properties": MEMBER_PROPS},
        itemsToParse=items,
        itemsToParseName="member",
    )
    [result] = await sync(catalog, source_spec(api.url), spec)
    assert result.succeeded and result.entities_upserted == 3
    assert props(await entities(catalog)) == {
        "u1": {"team": "a", "viaItem": None, "count": 2, "tags": ["x", "y"]},
        "u2": {"team": "a", "viaItem": None, "count": 2, "tags": ["x", "y"]},
        "u3": {"team": "b", "viaItem": None, "count": 1, "tags": ["z"]},
    }


@pytest.mark.parametrize(
    ("items", "props_after"),
    [
        (".members", {"count": 0, "tags": ["x", "y"]}),  # Python path
        (".members | map(.)", {"count": 0, "tags": ["x", "y"]}),  # jq path, its leading path removed
        (".meta.tags | map({login: .})", {"count": 2, "tags": None}),  # a nested path
    ],
)
async def test_items_to_parse_top_level_transform(
    api: OceanLikeApi, catalog: Catalog, items: str, props_after: dict[str, Any]
) -> None:
    fields = {"identifier": ".item.login", "properties": {"count": ".members | length", "tags": ".meta.tags"}}
    spec = mapping("/teams", fields, itemsToParse=items, itemsToParseTopLevelTransform=True)
    [result] = await sync(catalog, source_spec(api.url), spec)
    assert result.succeeded, result.message
    found = props(await entities(catalog))
    assert len(found) == 3
    first = next(iter(found.values()))
    assert {k: first[k] for k in props_after} == props_after


async def test_top_level_transform_without_a_leading_path_is_a_clear_failure(
    api: OceanLikeApi, catalog: Catalog
) -> None:
    spec = mapping(
        "/teams", {"identifier": ".item"}, itemsToParse="[.members[].login]", itemsToParseTopLevelTransform=True
    )
    [result] = await sync(catalog, source_spec(api.url), spec)
    assert result.outcome == "Failed" and result.stalled
    assert "itemsToParse '[.members[].login]' does not start with a path" in (result.message or "")
    assert await catalog.sink.count() == 0


def test_items_to_parse_name_needs_items_to_parse() -> None:
    with pytest.raises(ValidationError, match="itemsToParseName and itemsToParseTopLevelTransform need itemsToParse"):
        mapping("/teams", {"identifier": ".id"}, itemsToParseName="member")
    with pytest.raises(ValidationError, match="itemsToParseName"):
        mapping("/teams", {"identifier": ".id"}, itemsToParse=".members", itemsToParseName="not a key")


# --------------------------------------------------------------------------- singleObject


async def test_single_object_response_becomes_one_entity(api: OceanLikeApi, catalog: Catalog) -> None:
    status = mapping(
        "/status", {"identifier": '"api"', "properties": {"version": ".version"}}, selector={"singleObject": True}
    )
    wrapped = mapping("/wrapped", {"identifier": ".id"}, selector={"dataPath": ".data", "singleObject": True})
    listed = mapping("/list", {"identifier": ".id"}, selector={"dataPath": ".data", "singleObject": True})
    results = await sync(catalog, source_spec(api.url), status, wrapped, listed)
    assert [(r.outcome, r.entities_upserted) for r in results] == [("Succeeded", 1)] * 3
    found = await entities(catalog)
    assert set(found) == {"api", "7", "1"}  # an array stays a list of items
    assert found["api"]["properties"] == {"version": "1.2.3"}


async def test_an_object_without_single_object_stays_an_error(api: OceanLikeApi, catalog: Catalog) -> None:
    default = mapping("/status", {"identifier": '"api"'})
    wrapped = mapping("/wrapped", {"identifier": ".id"}, selector={"dataPath": ".data"})
    results = await sync(catalog, source_spec(api.url), default, wrapped)
    assert [r.reason for r in results] == ["DataPathNotArray", "DataPathNotArray"]
    assert "or selector.singleObject: true" in (results[0].message or "")
    assert (results[1].message or "").endswith("set selector.singleObject: true to take the object as one item")
    assert await catalog.sink.count() == 0


# --------------------------------------------------------------------------- search queries


SEARCH_TEAM = {"combinator": '"and"', "rules": [{"property": '"$identifier"', "operator": '"="', "value": ".id"}]}
SEARCH_OWNER = {
    "combinator": '"or"',
    "rules": [
        {"property": '"email"', "operator": '"="', "value": '.members[0].login + "@example.com"'},
        {"combinator": '"and"', "rules": [{"property": '"$title"', "operator": '"in"', "value": "[.name, .id]"}]},
    ],
}


async def test_search_query_relations_and_team_are_evaluated_and_stored_as_queries(
    api: OceanLikeApi, catalog: Catalog
) -> None:
    spec = mapping(
        "/teams", {"identifier": ".id", "team": SEARCH_TEAM, "relations": {"owner": SEARCH_OWNER, "plain": ".name"}}
    )
    [result] = await sync(catalog, source_spec(api.url), spec)
    assert result.succeeded, result.message
    alpha = (await entities(catalog))["a"]
    assert alpha["team"] == {"combinator": "and", "rules": [{"property": "$identifier", "operator": "=", "value": "a"}]}
    assert alpha["relations"] == {
        "owner": {
            "combinator": "or",
            "rules": [
                {"property": "email", "operator": "=", "value": "u1@example.com"},
                {"combinator": "and", "rules": [{"property": "$title", "operator": "in", "value": ["Alpha", "a"]}]},
            ],
        },
        "plain": "Alpha",
    }


@pytest.mark.parametrize(
    ("relation", "message"),
    [
        ({"combinator": '"and"'}, "exactly the keys combinator and rules"),
        ({"combinator": '"and"', "rules": []}, "a list of 1 to 32 rules"),
        ({"combinator": '"and"', "rules": [{"property": '"p"', "value": "."}]}, "rules[0]: a rule"),
        ({"combinator": '"and"', "rules": [{"property": '"p"', "operator": 1, "value": "."}]}, "operator: a jq"),
        (["x"], "a jq expression (string) or a search query"),
    ],
)
def test_invalid_search_queries_are_refused(relation: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=r"mappings\.relations\.r") as info:
        mapping("/teams", {"identifier": ".id", "relations": {"r": relation}})
    assert message in str(info.value)


async def test_invalid_jq_in_a_search_query_names_the_field(api: OceanLikeApi, catalog: Catalog) -> None:
    bad = {"combinator": '"and"', "rules": [{"property": '"p"', "operator": '"="', "value": ".id |"}]}
    [result] = await sync(catalog, source_spec(api.url), mapping("/teams", {"identifier": ".id", "team": bad}))
    assert result.reason == "InvalidJq" and "mappings.team" in (result.message or "")


# --------------------------------------------------------------------------- the parent cache


def nested(kind: str, **param: Any) -> HttpEndpointMappingSpec:
    return mapping(
        kind,
        {"identifier": '.__team + "/" + (.name // .login)', "properties": {"team": ".__team"}},
        selector={"pathParameters": {"team": {"endpoint": "/teams", "field": ".id", **param}}},
    )


async def test_a_parent_shared_by_nested_mappings_is_fetched_once_per_sync(api: OceanLikeApi, catalog: Catalog) -> None:
    repos, people = nested("/teams/{team}/repos"), nested("/teams/{team}/people")
    source = source_spec(api.url)
    results = await sync(catalog, source, repos, people)
    assert [(r.outcome, r.entities_upserted) for r in results] == [("Succeeded", 4), ("Succeeded", 3)]
    assert api.hits["/teams"] == 1
    assert sorted(await entities(catalog)) == ["a/a-r1", "a/a-r2", "a/u1", "a/u2", "b/b-r1", "b/b-r2", "b/u3"]
    assert results[0].requests + results[1].requests == 1 + 2 + 2  # the parent once, four children

    await sync(catalog, source, repos, people, concurrency=1)  # one after the other: still once
    assert api.hits["/teams"] == 2  # the next sync fetches it again


async def test_the_other_mappings_read_the_parent_pages_as_they_arrive(api: OceanLikeApi, catalog: Catalog) -> None:
    """The parent's second page is only served once a child of its first page was requested: whichever
    mapping fetches the parent, the other one must start from the first page without waiting for all."""
    api.hold_second_page = True
    source = source_spec(api.url, pagination={"type": "offset", "pageSize": 1})
    results = await sync(catalog, source, nested("/teams/{team}/repos"), nested("/teams/{team}/people"))
    assert [(r.outcome, r.entities_upserted) for r in results] == [("Succeeded", 4), ("Succeeded", 3)]
    assert [api.hits[f"/teams?offset={o}&limit=1"] for o in (0, 1, 2)] == [1, 1, 1]  # once each, not twice


async def test_two_parameters_of_one_mapping_on_the_shared_parent(api: OceanLikeApi, catalog: Catalog) -> None:
    """One mapping takes both of its parameters from /teams, which another mapping shares: it must not
    wait for its own fetch of /teams (a deadlock guard: wait_for fails the test instead of hanging)."""
    both = mapping(
        "/teams/{team}/named/{tname}",
        {"identifier": ".name"},
        selector={
            "pathParameters": {
                "team": {"endpoint": "/teams", "field": ".id"},
                "tname": {"endpoint": "/teams", "field": ".name"},
            }
        },
    )
    results = await asyncio.wait_for(
        sync(catalog, source_spec(api.url), both, nested("/teams/{team}/repos"), concurrency=1), 30
    )
    assert [(r.outcome, r.entities_upserted) for r in results] == [("Succeeded", 4), ("Succeeded", 4)]
    assert api.hits["/teams/a/named/Beta"] == 1


async def test_mappings_using_two_shared_parents_in_opposite_orders(api: OceanLikeApi, catalog: Catalog) -> None:
    """Each mapping walks one shared parent while it reads all of the other: neither may wait for the
    other mapping to move on (a deadlock guard: wait_for fails the test instead of hanging)."""
    team = {"endpoint": "/teams", "field": ".id"}
    tname = {"endpoint": "/list", "dataPath": ".data", "field": ".name"}
    one = mapping(
        "/teams/{team}/named/{tname}",
        {"identifier": ".name"},
        selector={"pathParameters": {"team": team, "tname": tname}},
    )
    other = mapping(
        "/by/{tname}/of/{team}",
        {"identifier": '"by-" + .name'},
        selector={"pathParameters": {"team": team, "tname": tname}},
    )
    results = await asyncio.wait_for(sync(catalog, source_spec(api.url), one, other), 30)
    assert [(r.outcome, r.entities_upserted) for r in results] == [("Succeeded", 2), ("Succeeded", 2)]
    assert (api.hits["/teams"], api.hits["/teams/a/named/one"], api.hits["/by/one/of/b"]) == (1, 1, 1)


async def test_different_parent_requests_are_not_shared(api: OceanLikeApi, catalog: Catalog) -> None:
    repos, people = nested("/teams/{team}/repos"), nested("/teams/{team}/people", queryParams={"limit": "1"})
    results = await sync(catalog, source_spec(api.url), repos, people)
    assert all(r.succeeded for r in results)
    assert api.hits == Counter({"/teams": 1, "/teams?limit=1": 1, "/teams/a/repos": 1, "/teams/b/repos": 1,
                                "/teams/a/people": 1})  # fmt: skip


async def test_a_failed_parent_fetch_fails_every_mapping_reading_it(api: OceanLikeApi, catalog: Catalog) -> None:
    api.fail_teams = 1
    source = source_spec(api.url)
    results = await sync(catalog, source, nested("/teams/{team}/repos"), nested("/teams/{team}/people"))
    assert [(r.outcome, r.reason) for r in results] == [("Failed", "HttpError")] * 2
    assert all(f"GET {api.url}/teams returned 400 Bad Request" in (r.message or "") for r in results)
    assert api.hits["/teams"] == 1 and await catalog.sink.count() == 0
    results = await sync(catalog, source, nested("/teams/{team}/repos"), nested("/teams/{team}/people"))
    assert [r.outcome for r in results] == ["Succeeded"] * 2  # the next sync fetches it anew
