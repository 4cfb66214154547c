"""The Port sink against the emulator's Port contract (issue 12): whole-request 422s bisected,
pre-validation, missing related entities, deletes with dependents and partial ``deletedEntities``,
one token per credential set for the process, pacing and concurrency."""

from __future__ import annotations

import time
from typing import Any

import pytest

from httpsync.engine.types import Entity, EntityRef
from httpsync.sinks.port import PortPacer, entity_problem
from tests.portapi.fixtures import port_sink
from tests.portapi.server import PortApi

OWNER = "team-a/services"


def entity(identifier: str, blueprint: str = "service", **fields: Any) -> Entity:
    e: dict[str, Any] = {"identifier": identifier, "blueprint": blueprint, "title": identifier, "properties": {}}
    e.update(fields)
    return e  # type: ignore[return-value]


def many(n: int, blueprint: str = "service", prefix: str = "s") -> list[Entity]:
    return [entity(f"{prefix}{i}", blueprint) for i in range(n)]


# --------------------------------------------------------------------------- one bad entity


@pytest.mark.parametrize("whole_request", [True, False], ids=["whole-request-422", "per-entity-207"])
async def test_a_batch_with_one_bad_identifier_lands_19_and_reports_1(portapi: PortApi, whole_request: bool) -> None:
    portapi.state.whole_request_422 = whole_request
    entities = many(20)
    entities[7] = entity("bad id")
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, entities)
    finally:
        await sink.aclose()
    assert portapi.state.count("service") == 19
    assert report.failed == []
    ((ref, message),) = report.invalid
    assert ref == EntityRef("service", "bad id") and "Port does not allow" in message
    # Checked before sending: one request, without the bad entity.
    (bulk,) = portapi.state.bulk_upserts()
    assert len(bulk.json()["entities"]) == 19 and bulk.status == 200


async def test_a_batch_refused_as_a_whole_is_bisected_to_the_bad_entity(portapi: PortApi) -> None:
    portapi.state.reject_request["s13"] = "body/properties/n must be number"
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, many(20))
    finally:
        await sink.aclose()
    assert portapi.state.count("service") == 19
    ((ref, message),) = report.failed
    assert ref == EntityRef("service", "s13")
    assert "must be number" in message and "X-Trace-Id " in message
    statuses = [r.status for r in portapi.state.requests_to("/v1/blueprints/service/entities", "POST")]
    assert statuses.count(422) >= 2 and statuses[0] == 422  # the whole batch, then its halves


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"identifier": "x" * 1001}, "at most 1000"),
        ({"identifier": ".."}, "not allowed"),
        ({"title": 42}, "title must be a string"),
        ({"icon": ["a"]}, "icon must be a string"),
        ({"team": [1]}, "team must be"),
        ({"relations": {"owner": 7}}, "relation 'owner' must be"),
        ({"relations": {"owner": ["a", None]}}, "relation 'owner' must be"),
    ],
)
def test_entity_problems_are_found_before_sending(fields: dict[str, Any], expected: str) -> None:
    problem = entity_problem({**entity("ok"), **fields})  # type: ignore[typeddict-item]
    assert problem is not None and expected in problem


def test_unicode_letters_and_relation_shapes_are_valid() -> None:
    relations = {"a": "x", "b": ["x", "y"], "c": None, "d": {"combinator": "and", "rules": []}}
    assert entity_problem(entity("café-ünïcode_東京@a.b+c:d\\e/f=g", relations=relations, team=["t"])) is None


async def test_unicode_identifiers_land(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, [entity("café-東京")])
    finally:
        await sink.aclose()
    assert report.failed == [] and report.invalid == []
    assert portapi.state.entity("service", "café-東京") is not None


# --------------------------------------------------------------------------- related entities


@pytest.mark.parametrize("create", [True, False])
async def test_create_missing_related_entities_is_sent(portapi: PortApi, create: bool) -> None:
    portapi.state.relation_targets = {"comment": {"ticket": "ticket"}}
    sink = port_sink(portapi, create_missing_related_entities=create)
    try:
        report = await sink.upsert(OWNER, [entity("c1", "comment", relations={"ticket": "t1"})], sync_id="one")
    finally:
        await sink.aclose()
    (bulk,) = portapi.state.bulk_upserts()
    assert bulk.query["create_missing_related_entities"] == str(create).lower()
    assert (portapi.state.entity("ticket", "t1") is not None) is create
    assert [ref for ref, _ in report.failed] == ([] if create else [EntityRef("comment", "c1")])


async def test_an_entity_missing_its_related_one_is_sent_again_once(portapi: PortApi) -> None:
    portapi.state.relation_targets = {"comment": {"ticket": "ticket"}}
    sink = port_sink(portapi, create_missing_related_entities=False)
    comments = [entity(c, "comment", relations={"ticket": t}) for c, t in (("c1", "t1"), ("c2", "t9"))]
    try:
        first = await sink.upsert("ns/comments", comments, sync_id="one")
        assert "sent again after the other mappings" in first.failed[0][1]
        await sink.upsert("ns/tickets", [entity("t1", "ticket")], sync_id="two")
        outcome = await sink.retry_deferred("ns/comments")
        again = await sink.retry_deferred("ns/comments")
    finally:
        await sink.aclose()
    assert outcome is not None
    landed, report = outcome
    assert [e["identifier"] for e in landed] == ["c1"]
    assert [ref for ref, _ in report.failed] == [EntityRef("comment", "c2")]
    assert again is None  # once
    assert portapi.state.entity("comment", "c1") is not None and portapi.state.entity("ticket", "t9") is None


async def test_a_single_upsert_missing_its_related_entity_is_a_failed_entity_not_a_stall(portapi: PortApi) -> None:
    portapi.state.relation_targets = {"comment": {"ticket": "ticket"}}
    portapi.state.max_body_bytes = 400  # the bulk answers 413: the entity goes alone
    sink = port_sink(portapi, create_missing_related_entities=False)
    try:
        report = await sink.upsert(OWNER, [entity("c1", "comment", relations={"ticket": "t1"})], sync_id="one")
        portapi.state.entities["ticket"] = {"t1": {"identifier": "t1", "blueprint": "ticket"}}
        outcome = await sink.retry_deferred(OWNER)
    finally:
        await sink.aclose()
    assert [ref for ref, _ in report.failed] == [EntityRef("comment", "c1")]
    assert "not found" in report.failed[0][1]
    assert outcome is not None and [e["identifier"] for e in outcome[0]] == ["c1"]


# --------------------------------------------------------------------------- deletes


@pytest.mark.parametrize("status", [422, 409, 400])
async def test_a_bulk_delete_refused_for_dependents_falls_back_one_by_one(portapi: PortApi, status: int) -> None:
    portapi.state.dependents = {"s1"}
    portapi.state.dependents_status = status
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(3))
        report = await sink.delete(OWNER, [EntityRef("service", f"s{i}") for i in range(3)])
    finally:
        await sink.aclose()
    ((ref, message),) = report.failed
    assert ref == EntityRef("service", "s1") and "deleteDependents" in message and "X-Trace-Id" in message
    assert list(portapi.state.entities["service"]) == ["s1"]


async def test_delete_dependents_is_sent(portapi: PortApi) -> None:
    portapi.state.dependents = {"s1"}
    sink = port_sink(portapi, delete_dependents=True)
    try:
        await sink.upsert(OWNER, many(3))
        report = await sink.delete(OWNER, [EntityRef("service", f"s{i}") for i in range(3)])
    finally:
        await sink.aclose()
    assert report.failed == []
    (bulk,) = portapi.state.requests_to("/v1/blueprints/service/bulk/entities/delete")
    assert bulk.query == {"delete_dependents": "true"}
    assert portapi.state.count("service") == 0


async def test_only_the_deleted_entities_listed_by_port_are_forgotten(portapi: PortApi) -> None:
    portapi.state.undeletable = {"s2": "entity is locked"}
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(4))
        refs = [EntityRef("service", f"s{i}") for i in range(4)] + [EntityRef("service", "long-gone")]
        report = await sink.delete(OWNER, refs)
    finally:
        await sink.aclose()
    # s2 was not in deletedEntities and Port refuses it alone too: failed, so it stays owned.
    # long-gone was not listed either, but Port no longer has it (404): deleted.
    assert [ref for ref, _ in report.failed] == [EntityRef("service", "s2")]
    assert "entity is locked" in report.failed[0][1]
    singles = portapi.state.requests_to("/v1/blueprints/service/entities/", "DELETE")
    assert sorted((r.path.rsplit("/", 1)[1], r.status) for r in singles) == [("long-gone", 404), ("s2", 409)]
    assert list(portapi.state.entities["service"]) == ["s2"]


# --------------------------------------------------------------------------- tokens, pacing


async def test_one_token_for_many_sinks_with_the_same_credentials(portapi: PortApi) -> None:
    for _ in range(5):  # a sink per sync (a source with its own spec.sink), one after the other
        sink = port_sink(portapi)
        try:
            await sink.upsert(OWNER, many(3))
        finally:
            await sink.aclose()
    other = port_sink(portapi, client_secret="another-secret")
    try:
        with pytest.raises(Exception, match="refused the credentials"):
            await other.upsert(OWNER, many(1))
    finally:
        await other.aclose()
    assert portapi.state.token_requests == 2  # one for the 5 sinks; the other credentials their own


async def test_a_revoked_shared_token_is_refreshed_once_for_every_sink(portapi: PortApi) -> None:
    sinks = [port_sink(portapi) for _ in range(3)]
    try:
        await sinks[0].upsert(OWNER, many(1))
        portapi.state.revoke_tokens()
        for sink in sinks:
            assert (await sink.upsert(OWNER, many(2))).failed == []
    finally:
        for sink in sinks:
            await sink.aclose()
    assert portapi.state.token_requests == 2


async def test_paced_at_the_limits_no_429(portapi: PortApi) -> None:
    # Port's limits scaled down to 30 requests a second (window 1 s), the sink paced to the same.
    portapi.state.rate_limits = {"entities": (30, 1.0, 30)}
    sink = port_sink(portapi, pacer=PortPacer(entities=(30, 1.0, 5)))
    try:
        report = await sink.upsert(OWNER, many(1500))  # 75 requests: more than two windows
    finally:
        await sink.aclose()
    assert report.failed == []
    assert portapi.state.count("service") == 1500
    assert portapi.state.rate_limited == 0


async def test_unpaced_the_emulator_answers_429_which_is_honoured(portapi: PortApi) -> None:
    """The test above can fail: without pacing the same load meets 429s; x-ratelimit-reset makes
    the sink wait for the window, and every entity still lands."""
    portapi.state.rate_limits = {"entities": (30, 1.0, 30)}
    sink = port_sink(portapi, pacer=PortPacer(entities=(1e9, 1.0, 1e6)), max_retries=8)
    try:
        report = await sink.upsert(OWNER, many(800))
    finally:
        await sink.aclose()
    assert portapi.state.rate_limited > 0
    assert report.failed == [] and portapi.state.count("service") == 800


async def test_a_429_x_ratelimit_reset_is_honoured(portapi: PortApi) -> None:
    portapi.state.inject(429, 1, headers={"x-ratelimit-reset": str(int(time.time()) + 1)})
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, many(2))
    finally:
        await sink.aclose()
    assert report.failed == [] and portapi.state.count("service") == 2
    limited, retried = portapi.state.bulk_upserts()
    assert limited.status == 429 and retried.status == 200


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_bulk_requests_of_one_mapping_go_out_concurrently_bounded(portapi: PortApi, concurrency: int) -> None:
    portapi.state.latency = 0.02
    sink = port_sink(portapi, concurrency=concurrency)
    try:
        await sink.upsert(OWNER, many(200))  # 10 requests
    finally:
        await sink.aclose()
    assert portapi.state.count("service") == 200
    assert portapi.state.max_in_flight == concurrency


async def test_user_agent_names_httpsync_its_version_and_the_owner(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    (token,) = portapi.state.requests_to("/v1/auth/access_token")
    (bulk,) = portapi.state.bulk_upserts()
    assert token.headers["user-agent"].startswith("httpsync/")
    agent = bulk.headers["user-agent"]
    assert agent.startswith("httpsync/") and agent.endswith(f"/{OWNER}/exporter")
    assert portapi.state.datasource[("service", "s0")] == agent


async def test_the_token_endpoint_is_paced(portapi: PortApi) -> None:
    # The token endpoint's limit scaled down (3 a second, bursts of 2), the sink paced to the same.
    portapi.state.rate_limits = {"token": (3, 1.0, 2)}
    sink = port_sink(portapi, pacer=PortPacer(token=(3, 1.0, 2)))
    try:
        for _ in range(6):  # every token revoked: a new one each time
            portapi.state.revoke_tokens()
            assert (await sink.upsert(OWNER, many(1))).failed == []
    finally:
        await sink.aclose()
    assert portapi.state.token_requests == 6
    assert portapi.state.rate_limited == 0
