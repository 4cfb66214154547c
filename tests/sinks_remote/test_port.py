"""The Port sink against the Port API emulator: shape, token life cycle, batching, 413 splits,
retries, partial errors, deletes, and no secret in any error."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from typing import Any

import pytest

from httpsync.api.models import SinkSpec
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SecretError, SinkError
from httpsync.http.transport import AiohttpTransport
from httpsync.sinks.factory import build_sink
from httpsync.sinks.port import PortSink
from tests.portapi import server
from tests.portapi.fixtures import port_sink
from tests.portapi.server import PortApi
from tests.testapi.fixtures import StaticSecrets

OWNER = "team-a/services"


def entity(identifier: str, blueprint: str = "service", **fields: Any) -> Entity:
    e: dict[str, Any] = {
        "identifier": identifier,
        "blueprint": blueprint,
        "title": f"Service {identifier}",
        "properties": {"n": 1},
        "relations": {},
    }
    e.update(fields)
    return e  # type: ignore[return-value]


def many(n: int, blueprint: str = "service", prefix: str = "s", **fields: Any) -> list[Entity]:
    return [entity(f"{prefix}{i}", blueprint, **fields) for i in range(n)]


def issued_tokens(api: PortApi) -> list[str]:
    return [r.headers["authorization"].split(" ", 1)[1] for r in api.log if "authorization" in r.headers]


def assert_no_secret(api: PortApi, text: str) -> None:
    assert server.CLIENT_SECRET not in text
    for token in issued_tokens(api):
        assert token not in text


# --------------------------------------------------------------------------- upsert


async def test_upsert_lands_in_port_with_port_shape(portapi: PortApi) -> None:
    entities = [
        entity("api", title="API", icon="Service", team="platform", properties={"lang": "go"}, relations={"dep": "db"}),
        entity("web", title=None, properties={"lang": "ts"}),
        entity("db-1", "database", title="DB", team=None, icon=None),
    ]
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, entities)
    finally:
        await sink.aclose()

    assert report.failed == []
    state = portapi.state
    assert state.entity("service", "api") == {
        "identifier": "api",
        "blueprint": "service",
        "title": "API",
        "icon": "Service",
        "team": "platform",
        "properties": {"lang": "go"},
        "relations": {"dep": "db"},
    }
    assert state.entity("database", "db-1") is not None
    bulk = state.bulk_upserts()
    assert [r.path for r in bulk] == ["/v1/blueprints/service/entities/bulk", "/v1/blueprints/database/entities/bulk"]
    assert bulk[0].query == {"upsert": "true", "merge": "true", "create_missing_related_entities": "true"}
    assert bulk[0].headers["content-type"] == "application/json"
    assert bulk[0].headers["authorization"].startswith("Bearer port-at-")
    sent = bulk[0].json()["entities"]
    assert sent[1] == {"identifier": "web", "blueprint": "service", "properties": {"lang": "ts"}, "relations": {}}
    assert set(bulk[1].json()["entities"][0]) == {"identifier", "blueprint", "title", "properties", "relations"}


async def test_upsert_merges_into_existing_entities(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, [entity("api", properties={"a": 1, "b": 1})])
        await sink.upsert(OWNER, [entity("api", properties={"b": 2})])
    finally:
        await sink.aclose()
    assert portapi.state.entity("service", "api")["properties"] == {"a": 1, "b": 2}  # type: ignore[index]


async def test_partial_bulk_errors_are_failed_refs_not_fatal(portapi: PortApi) -> None:
    portapi.state.reject["s3"] = "property 'n' must be a string"
    entities = [*many(5), entity("bad id with spaces")]
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, entities)
    finally:
        await sink.aclose()

    failed = dict(report.failed)
    assert set(failed) == {EntityRef("service", "s3")}
    assert "must be a string" in failed[EntityRef("service", "s3")]
    (bulk,) = portapi.state.bulk_upserts()
    assert bulk.status == 207
    # Port's X-Trace-Id is quoted, to give Port's support.
    assert re.search(r"X-Trace-Id [0-9a-f]{16}", failed[EntityRef("service", "s3")])
    # An identifier Port's schema refuses is not sent at all: a mapping error of the sink.
    ((ref, message),) = report.invalid
    assert ref == EntityRef("service", "bad id with spaces") and "characters Port does not allow (' ')" in message
    assert portapi.state.count("service") == 4


# --------------------------------------------------------------------------- token


async def test_one_token_for_many_batches_and_concurrent_callers(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await asyncio.gather(*(sink.upsert(OWNER, many(45, prefix=f"c{k}-")) for k in range(4)))
    finally:
        await sink.aclose()
    assert portapi.state.token_requests == 1
    assert len(portapi.state.bulk_upserts()) == 4 * 3
    assert portapi.state.count("service") == 180


async def test_token_refreshed_before_it_expires(portapi: PortApi) -> None:
    portapi.state.token_ttl = 0.3
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(3))
        await asyncio.sleep(0.35)
        await sink.upsert(OWNER, many(3, prefix="t"))
    finally:
        await sink.aclose()
    assert portapi.state.token_requests == 2
    assert all(r.status != 401 for r in portapi.log)
    assert portapi.state.count("service") == 6


async def test_revoked_token_refreshed_once_and_request_resent(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(2))
        portapi.state.revoke_tokens()
        report = await sink.upsert(OWNER, many(2, prefix="after"))
    finally:
        await sink.aclose()
    assert report.failed == []
    assert portapi.state.token_requests == 2
    assert [r.status for r in portapi.state.bulk_upserts()] == [200, 401, 200]
    assert portapi.state.entity("service", "after1") is not None


async def test_concurrent_401s_share_one_refresh(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))
        portapi.state.revoke_tokens()
        await asyncio.gather(*(sink.upsert(OWNER, many(3, prefix=f"p{k}-")) for k in range(5)))
    finally:
        await sink.aclose()
    assert portapi.state.token_requests == 2
    assert portapi.state.count("service") == 16


async def test_401_after_a_refresh_is_an_auth_failure(portapi: PortApi) -> None:
    portapi.state.inject(401, 2)
    sink = port_sink(portapi)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(2))
    finally:
        await sink.aclose()
    assert err.value.reason == "PortAuthFailed"
    assert err.value.stalled
    assert portapi.state.token_requests == 2  # one refresh, not a loop
    assert len(portapi.state.bulk_upserts()) == 2


async def test_bad_credentials_stall_with_a_hint_and_no_secret(portapi: PortApi) -> None:
    portapi.state.echo_credentials = True
    sink = port_sink(portapi, client_secret="wrong-port-secret-1234")
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    message = str(err.value)
    assert err.value.reason == "PortAuthFailed"
    assert err.value.stalled
    assert "401" in message and "clientSecret in the Secret named by sink.port.secretRef" in message
    assert "wrong-port-secret-1234" not in message
    assert "***" in message  # the server echoed it; it was masked
    assert portapi.state.token_requests == 1  # a refused credential is not retried


async def test_token_endpoint_outage_is_retried(portapi: PortApi) -> None:
    portapi.state.inject(503, 2, token=True)
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    assert portapi.state.token_requests == 1  # the two 503s were answered before the handler
    assert len(portapi.state.requests_to("/v1/auth/access_token")) == 3


# --------------------------------------------------------------------------- batching


async def test_batches_bounded_by_count(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(45))
    finally:
        await sink.aclose()
    assert [len(r.json()["entities"]) for r in portapi.state.bulk_upserts()] == [20, 20, 5]


async def test_batches_bounded_by_one_mebibyte(portapi: PortApi) -> None:
    portapi.state.max_body_bytes = 1_048_576  # Port's limit: a 413 here would be a batching bug
    blob = "x" * 100_000
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, many(30, properties={"blob": blob}))
    finally:
        await sink.aclose()
    assert report.failed == []
    bulk = portapi.state.bulk_upserts()
    assert all(r.status == 200 and len(r.body) <= 1_048_576 for r in bulk)
    assert [len(r.json()["entities"]) for r in bulk] == [10, 10, 10]
    assert portapi.state.count("service") == 30


async def test_413_splits_in_halves_down_to_single_entities(portapi: PortApi) -> None:
    portapi.state.max_body_bytes = 10_000
    entities = [*many(8, properties={"blob": "y" * 3_000}), entity("huge", properties={"blob": "z" * 20_000})]
    sink = port_sink(portapi)
    try:
        report = await sink.upsert(OWNER, entities)
    finally:
        await sink.aclose()

    assert [(ref, msg.split(" (")[0]) for ref, msg in report.failed] == [
        (EntityRef("service", "huge"), "entity larger than Port accepts")
    ]
    assert portapi.state.count("service") == 8
    sizes = [len(r.json()["entities"]) for r in portapi.state.bulk_upserts()]
    # 9 -> 4 | 5; 4 -> 2 | 2 (fit); 5 -> 2 (fits) | 3; 3 -> s6 alone | [s7, huge] (413) -> s7, huge alone
    assert sizes == [9, 4, 2, 2, 5, 2, 3, 2]
    posts = portapi.state.requests_to("/v1/blueprints/service/entities", "POST")
    singles = [r for r in posts if r.path.endswith("/entities")]
    assert [(json.loads(r.body)["identifier"], r.status) for r in singles] == [("s6", 201), ("s7", 201), ("huge", 413)]
    assert singles[0].query == {"upsert": "true", "merge": "true", "create_missing_related_entities": "true"}


async def test_5xx_and_429_are_retried_and_retry_after_honoured(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))  # the token first
        portapi.state.inject(503, 2)
        portapi.state.inject(429, 1, retry_after="0.3")
        started = time.monotonic()
        report = await sink.upsert(OWNER, many(3, prefix="r"))
        elapsed = time.monotonic() - started
    finally:
        await sink.aclose()
    assert report.failed == []
    assert [r.status for r in portapi.state.bulk_upserts()] == [200, 503, 503, 429, 200]
    assert elapsed >= 0.3
    assert portapi.state.count("service") == 4


async def test_retries_exhausted_raise_with_status_and_body(portapi: PortApi) -> None:
    portapi.state.inject(502, 10)
    sink = port_sink(portapi, max_retries=2)
    try:
        await sink._get_authorization()
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    message = str(err.value)
    assert "502 Bad Gateway" in message and "(3 attempts)" in message and "injected" in message
    assert not err.value.stalled


async def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}"
    sink = PortSink(url, server.CLIENT_ID, server.CLIENT_SECRET, max_retries=2, backoff=0.001)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    assert "ConnectError" in str(err.value) and "(3 attempts)" in str(err.value)
    assert sink.requests == 3


async def test_a_rate_limited_403_is_retried_but_a_plain_403_is_not(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))  # the token first
        portapi.state.inject(403, 1, retry_after="0.2", headers={"X-RateLimit-Remaining": "0"})
        started = time.monotonic()
        report = await sink.upsert(OWNER, many(2, prefix="r"))
        elapsed = time.monotonic() - started
        portapi.state.inject(403, 1)
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(1, prefix="f"))
    finally:
        await sink.aclose()
    assert report.failed == []
    assert elapsed >= 0.2  # the Retry-After of the rate-limited answer
    assert [r.status for r in portapi.state.bulk_upserts()] == [200, 403, 200, 403]
    assert err.value.reason == "PortAuthFailed" and err.value.stalled
    assert "403 Forbidden" in str(err.value) and "may not write this blueprint" in str(err.value)


async def test_a_retry_after_holds_every_request_of_the_sink(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(1))  # the token first
        portapi.state.inject(429, 1, retry_after="0.4")
        await asyncio.gather(*(sink.upsert(OWNER, many(60, prefix=f"c{k}-")) for k in range(4)))
    finally:
        await sink.aclose()
    bulk = portapi.state.bulk_upserts()
    (limited,) = [r for r in bulk if r.status == 429]
    # Once the sink heard the 429, no request starts for 0.4 s: only those already sent (at most
    # the other batches in flight: 4 callers, sink.concurrency each) arrive during the pause.
    during = [r for r in bulk if limited.time < r.time < limited.time + 0.35]
    assert len(during) <= 4 * sink.concurrency - 1, [(r.status, r.time - limited.time) for r in during]
    assert portapi.state.count("service") == 1 + 240


async def test_token_endpoint_retry_after_is_honoured(portapi: PortApi) -> None:
    portapi.state.inject(429, 1, retry_after="0.3", token=True)
    sink = port_sink(portapi)
    try:
        started = time.monotonic()
        await sink.upsert(OWNER, many(1))
        elapsed = time.monotonic() - started
    finally:
        await sink.aclose()
    assert elapsed >= 0.3
    assert [r.status for r in portapi.state.requests_to("/v1/auth/access_token")] == [429, 200]


async def test_an_unreachable_proxy_is_retried_then_reported(portapi: PortApi, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    sink = port_sink(portapi, max_retries=2, transport=AiohttpTransport())
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    assert "ProxyError" in str(err.value) and "(3 attempts)" in str(err.value)
    assert not err.value.stalled
    assert sink.requests == 3  # the token request, three times: a proxy error is worth a retry
    assert portapi.log == []


async def test_other_4xx_on_a_batch_is_fatal_with_the_body_start(portapi: PortApi) -> None:
    portapi.state.blueprints = {"service"}
    portapi.state.echo_credentials = True
    sink = port_sink(portapi)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("x", "nosuchblueprint")])
    finally:
        await sink.aclose()
    message = str(err.value)
    assert "404 Not Found" in message and "blueprint 'nosuchblueprint' was not found" in message
    assert err.value.stalled
    assert_no_secret(portapi, message)
    assert "Bearer ***" in message  # the server echoed the token; it was masked


async def test_identifiers_and_blueprints_are_url_encoded(portapi: PortApi) -> None:
    portapi.state.bulk_delete_enabled = False
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, [entity("repo/a=b"), entity("x:y@z")])
        report = await sink.delete(OWNER, [EntityRef("service", "repo/a=b"), EntityRef("service", "x:y@z")])
    finally:
        await sink.aclose()
    assert report.failed == []
    deletes = portapi.state.requests_to("/v1/blueprints/service/entities/", "DELETE")
    assert [r.raw_path.split("?")[0] for r in deletes] == [
        "/v1/blueprints/service/entities/repo%2Fa%3Db",
        "/v1/blueprints/service/entities/x%3Ay%40z",
    ]
    assert portapi.state.count("service") == 0


# --------------------------------------------------------------------------- delete


async def test_delete_in_bulk_batches_of_100(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(150))
        refs = [EntityRef("service", f"s{i}") for i in range(120)] + [EntityRef("service", "never-existed")]
        report = await sink.delete(OWNER, refs)
    finally:
        await sink.aclose()
    assert report.failed == []
    bulk = portapi.state.requests_to("/v1/blueprints/service/bulk/entities/delete")
    assert [len(r.json()["entities"]) for r in bulk] == [100, 21]
    assert bulk[0].query == {"delete_dependents": "false"}
    assert portapi.state.count("service") == 30


async def test_delete_falls_back_to_single_deletes_on_an_older_api(portapi: PortApi) -> None:
    portapi.state.bulk_delete_enabled = False
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(3))
        refs = [EntityRef("service", f"s{i}") for i in range(3)] + [EntityRef("service", "gone")]
        report = await sink.delete(OWNER, refs)
    finally:
        await sink.aclose()
    assert report.failed == []  # a 404 on a single delete means already gone
    singles = portapi.state.requests_to("/v1/blueprints/service/entities/", "DELETE")
    assert [r.status for r in singles] == [200, 200, 200, 404]
    assert portapi.state.count("service") == 0


async def test_an_entity_with_dependents_fails_alone(portapi: PortApi) -> None:
    portapi.state.dependents = {"s1"}
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(3))
        report = await sink.delete(OWNER, [EntityRef("service", f"s{i}") for i in range(3)])
    finally:
        await sink.aclose()
    assert [ref for ref, _ in report.failed] == [EntityRef("service", "s1")]
    assert "dependent" in report.failed[0][1]
    assert list(portapi.state.entities["service"]) == ["s1"]


async def test_delete_refreshes_a_revoked_token(portapi: PortApi) -> None:
    sink = port_sink(portapi)
    try:
        await sink.upsert(OWNER, many(2))
        portapi.state.revoke_tokens()
        report = await sink.delete(OWNER, [EntityRef("service", "s0")])
    finally:
        await sink.aclose()
    assert report.failed == []
    assert portapi.state.token_requests == 2
    assert portapi.state.count("service") == 1


# --------------------------------------------------------------------------- factory


async def test_factory_builds_a_port_sink_from_its_secret(portapi: PortApi) -> None:
    spec = SinkSpec.model_validate({"type": "port", "port": {"baseUrl": portapi.url, "secretRef": {"name": "port"}}})
    secrets = StaticSecrets({"port": {"clientId": server.CLIENT_ID, "clientSecret": server.CLIENT_SECRET}})
    sink = await build_sink(spec, secrets, source="ns/src")
    try:
        assert isinstance(sink, PortSink) and sink.base_url == portapi.url
        await sink.upsert(OWNER, many(1))
    finally:
        await sink.aclose()
    assert secrets.reads == [("port", "clientId"), ("port", "clientSecret")]
    assert portapi.state.count("service") == 1


async def test_factory_missing_secret_key_propagates() -> None:
    spec = SinkSpec.model_validate({"type": "port", "port": {"secretRef": {"name": "port"}}})
    with pytest.raises(SecretError, match="clientSecret"):
        await build_sink(spec, StaticSecrets({"port": {"clientId": "id"}}), source="ns/src")


async def test_factory_refuses_the_catalog() -> None:
    with pytest.raises(ValueError, match="catalog"):
        await build_sink(SinkSpec.model_validate({"type": "catalog"}), StaticSecrets({}), source="ns/src")


def test_default_base_url_is_port_eu() -> None:
    spec = SinkSpec.model_validate({"type": "port", "port": {"secretRef": {"name": "port"}}})
    assert spec.port is not None and spec.port.base_url == "https://api.getport.io"
