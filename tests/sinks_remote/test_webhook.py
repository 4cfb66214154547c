"""The webhook sink against a real receiver: payload schema, batching, the signature (checked
with hmac and with openssl), idempotency across retries, failed entities, errors."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from httpsync.api.models import SinkSpec
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SinkError
from httpsync.sinks.factory import build_sink
from httpsync.sinks.webhook import WebhookSink
from tests.sinks_remote.conftest import Receiver, Reply
from tests.testapi.fixtures import StaticSecrets

OWNER = "team-a/services"
SOURCE = "team-a/github"
SECRET = "whsec-3f9a1c77e2b04d5d"


def entity(identifier: str, **fields: Any) -> Entity:
    e: dict[str, Any] = {"identifier": identifier, "blueprint": "service", "title": identifier.upper(), **fields}
    e.setdefault("properties", {"lang": "gö"})
    e.setdefault("relations", {})
    return e  # type: ignore[return-value]


def sink_for(receiver: Receiver, **options: Any) -> WebhookSink:
    options.setdefault("backoff", 0.001)
    options.setdefault("source", SOURCE)
    return WebhookSink(receiver.url, **options)


def openssl_hmac(secret: str, body: bytes) -> str:
    """The shell recipe of docs/webhook.md, run as written, over the raw body."""
    assert shutil.which("openssl"), "openssl is needed for this test"
    recipe = """openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //'"""
    env = {"SECRET": secret, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out = subprocess.run(["sh", "-c", recipe], input=body, env=env, capture_output=True, check=True, timeout=10)
    return out.stdout.decode().strip()


async def test_upsert_payload_schema_and_headers(receiver: Receiver) -> None:
    entities = [entity("a"), entity("b", team="platform")]
    sink = sink_for(receiver)
    try:
        report = await sink.upsert(OWNER, entities)
    finally:
        await sink.aclose()

    assert report.failed == []
    [request] = receiver.received
    payload = request.json()
    assert set(payload) == {"source", "mapping", "upserts", "deletes", "batchId", "sentAt"}
    assert payload["source"] == SOURCE and payload["mapping"] == OWNER
    assert payload["upserts"] == entities and payload["deletes"] == []
    assert str(uuid.UUID(payload["batchId"])) == payload["batchId"]
    assert payload["sentAt"].endswith("Z")
    assert abs(datetime.fromisoformat(payload["sentAt"]).timestamp() - time.time()) < 60
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == payload["batchId"]
    assert "x-httpsync-signature" not in request.headers  # no secret, no signature
    assert "gö".encode() in request.body  # UTF-8, not \\u escapes


async def test_delete_payload_and_batching(receiver: Receiver) -> None:
    refs = [EntityRef("service", f"s{i}") for i in range(5)]
    sink = sink_for(receiver, batch_size=2)
    try:
        await sink.upsert(OWNER, [entity(f"u{i}") for i in range(3)])
        await sink.delete(OWNER, refs)
    finally:
        await sink.aclose()

    payloads = [r.json() for r in receiver.received]
    assert [len(p["upserts"]) for p in payloads] == [2, 1, 0, 0, 0]
    assert [len(p["deletes"]) for p in payloads] == [0, 0, 2, 2, 1]
    assert payloads[2]["deletes"] == [
        {"blueprint": "service", "identifier": "s0"},
        {"blueprint": "service", "identifier": "s1"},
    ]
    keys = [r.headers["idempotency-key"] for r in receiver.received]
    assert len(set(keys)) == 5  # one key per batch


async def test_signature_verifies_with_hmac_and_openssl(receiver: Receiver) -> None:
    sink = sink_for(receiver, secret=SECRET)
    try:
        await sink.upsert(OWNER, [entity("a"), entity("b", properties={"note": 'quotes " and \\ and ünïcode'})])
    finally:
        await sink.aclose()

    [request] = receiver.received
    header = request.headers["x-httpsync-signature"]
    assert header.startswith("sha256=")
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header, f"sha256={expected}")
    assert header == f"sha256={openssl_hmac(SECRET, request.body)}"
    tampered = request.body.replace(b'"a"', b'"z"')
    assert header != f"sha256={openssl_hmac(SECRET, tampered)}"


async def test_retry_after_500_keeps_the_idempotency_key_and_body(receiver: Receiver) -> None:
    receiver.replies = [Reply(500, {"error": "boom"}), Reply(503, None)]
    sink = sink_for(receiver, secret=SECRET)
    try:
        report = await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()

    assert report.failed == []
    assert len(receiver.received) == 3
    first = receiver.received[0]
    for again in receiver.received[1:]:
        assert again.headers["idempotency-key"] == first.headers["idempotency-key"]
        assert again.headers["x-httpsync-signature"] == first.headers["x-httpsync-signature"]
        assert again.body == first.body


async def test_429_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.replies = [Reply(429, {"error": "slow down"}, {"Retry-After": "0.3"})]
    sink = sink_for(receiver)
    try:
        started = time.monotonic()
        await sink.delete(OWNER, [EntityRef("service", "a")])
        elapsed = time.monotonic() - started
    finally:
        await sink.aclose()
    assert len(receiver.received) == 2
    assert elapsed >= 0.3


async def test_failed_list_is_reported(receiver: Receiver) -> None:
    receiver.replies = [
        Reply(200, {"failed": [{"blueprint": "service", "identifier": "b", "message": "team unknown"}, {"bogus": 1}]})
    ]
    sink = sink_for(receiver)
    try:
        report = await sink.upsert(OWNER, [entity("a"), entity("b")])
    finally:
        await sink.aclose()
    assert report.failed == [(EntityRef("service", "b"), "team unknown")]


async def test_empty_or_non_json_2xx_accepts_the_batch(receiver: Receiver) -> None:
    receiver.replies = [Reply(204, None), Reply(202, None)]
    sink = sink_for(receiver)
    try:
        assert (await sink.upsert(OWNER, [entity("a")])).failed == []
        assert (await sink.delete(OWNER, [EntityRef("service", "a")])).failed == []
    finally:
        await sink.aclose()


async def test_4xx_is_fatal_and_never_shows_the_secret(receiver: Receiver) -> None:
    receiver.replies = [Reply(401, {"error": f"bad signature; expected secret {SECRET}"})]
    sink = sink_for(receiver, secret=SECRET)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    message = str(err.value)
    assert len(receiver.received) == 1  # not retried
    assert "401 Unauthorized" in message and "check the signing secret" in message
    assert SECRET not in message and "***" in message
    assert err.value.stalled


async def test_retries_exhausted_raise(receiver: Receiver) -> None:
    receiver.replies = [Reply(502, {"error": "bad gateway"})] * 3
    sink = sink_for(receiver, max_retries=2)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    assert "502 Bad Gateway" in str(err.value) and "(3 attempts)" in str(err.value)
    assert len(receiver.received) == 3


async def test_url_credentials_are_masked_in_errors(receiver: Receiver) -> None:
    receiver.replies = [Reply(400, {"error": "nope"})]
    sink = WebhookSink(receiver.url + "?token=url-token-value-77", backoff=0.001)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    assert "url-token-value-77" not in str(err.value)


@pytest.mark.parametrize(("ref", "key"), [({"name": "hook"}, "secret"), ({"name": "hook", "key": "hmac"}, "hmac")])
async def test_factory_builds_a_signing_webhook_sink(receiver: Receiver, ref: dict[str, str], key: str) -> None:
    spec = SinkSpec.model_validate({"type": "webhook", "webhook": {"url": receiver.url, "secretRef": ref}})
    secrets = StaticSecrets({"hook": {key: SECRET}})
    sink = await build_sink(spec, secrets, source=SOURCE)
    try:
        assert isinstance(sink, WebhookSink)
        await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    [request] = receiver.received
    assert secrets.reads == [("hook", key)]
    assert request.json()["source"] == SOURCE
    assert request.headers["x-httpsync-signature"] == f"sha256={openssl_hmac(SECRET, request.body)}"


async def test_factory_webhook_without_secret_does_not_sign(receiver: Receiver) -> None:
    spec = SinkSpec.model_validate({"type": "webhook", "webhook": {"url": receiver.url}})
    sink = await build_sink(spec, StaticSecrets({}), source=SOURCE)
    try:
        await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    assert "x-httpsync-signature" not in receiver.received[0].headers
