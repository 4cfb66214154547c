"""The webhook sink against a real receiver: payload schema, batching, the signature (checked
with hmac and with openssl), idempotency across retries, failed entities, errors."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from httpsync.api.models import SinkSpec
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SinkError
from httpsync.http.transport import AiohttpTransport
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
    assert set(payload) == {"type", "source", "mapping", "syncId", "upserts", "deletes", "batchId", "sentAt"}
    assert payload["type"] == "batch" and payload["syncId"] is None  # upserted outside a sync
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


# --------------------------------------------------------------------------- rate limits and proxies


async def test_a_rate_limited_403_is_retried_but_a_plain_403_is_not(receiver: Receiver) -> None:
    limited = {"X-RateLimit-Remaining": "0", "Retry-After": "0.2"}
    receiver.replies = [Reply(403, {"error": "rate limit exceeded"}, limited), Reply(200), Reply(403, {"error": "no"})]
    sink = sink_for(receiver)
    try:
        started = time.monotonic()
        assert (await sink.upsert(OWNER, [entity("a")])).failed == []
        elapsed = time.monotonic() - started
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("b")])
    finally:
        await sink.aclose()
    assert elapsed >= 0.2
    assert len(receiver.received) == 3
    assert receiver.received[0].body == receiver.received[1].body  # the same batch, retried
    assert err.value.reason == "WebhookRejected" and err.value.stalled
    assert "403 Forbidden" in str(err.value)


async def test_an_unreachable_proxy_is_retried_then_reported(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    sink = sink_for(receiver, max_retries=2, transport=AiohttpTransport())
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
    message = str(err.value)
    assert message.startswith(f"POST {receiver.url} failed (3 attempts): ProxyError: ")
    assert not err.value.stalled
    assert sink.requests == 3
    assert receiver.received == []


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (made with the openssl command line)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_an_untrusted_certificate_fails_at_once(self_signed: ssl.SSLContext) -> None:
    tls_receiver = await Receiver(ssl_context=self_signed).start()
    sink = sink_for(tls_receiver)
    try:
        with pytest.raises(SinkError) as err:
            await sink.upsert(OWNER, [entity("a")])
    finally:
        await sink.aclose()
        await tls_receiver.stop()
    assert str(err.value).startswith(
        f"POST {tls_receiver.url} failed: the server's TLS certificate was not accepted (self-signed certificate"
    )
    assert err.value.stalled and sink.requests == 1  # no retry fixes it
    assert tls_receiver.received == []


# --------------------------------------------------------------------------- syncs


async def test_batches_carry_the_sync_id_and_their_type(receiver: Receiver) -> None:
    sink = sink_for(receiver, batch_size=2)
    try:
        await sink.upsert(OWNER, [entity(f"u{i}") for i in range(3)], sync_id="sync-1")
        await sink.delete(OWNER, [EntityRef("service", "gone")], sync_id="sync-1")
    finally:
        await sink.aclose()
    payloads = [r.json() for r in receiver.received]
    assert [(p["type"], p["syncId"], len(p["upserts"]), len(p["deletes"])) for p in payloads] == [
        ("batch", "sync-1", 2, 0),
        ("batch", "sync-1", 1, 0),
        ("batch", "sync-1", 0, 1),
    ]


async def test_sync_completed_is_one_signed_message(receiver: Receiver) -> None:
    sink = sink_for(receiver, secret=SECRET)
    try:
        await sink.sync_completed(OWNER, "sync-7", entities=42, full=True)
    finally:
        await sink.aclose()
    [request] = receiver.received
    payload = request.json()
    assert set(payload) == {"type", "source", "mapping", "syncId", "entities", "full", "sentAt"}
    assert payload["type"] == "syncCompleted"
    assert (payload["source"], payload["mapping"], payload["syncId"]) == (SOURCE, OWNER, "sync-7")
    assert payload["entities"] == 42 and payload["full"] is True
    assert payload["sentAt"].endswith("Z")
    assert abs(datetime.fromisoformat(payload["sentAt"]).timestamp() - time.time()) < 60
    assert request.headers["content-type"] == "application/json"
    assert str(uuid.UUID(request.headers["idempotency-key"])) == request.headers["idempotency-key"]
    assert request.headers["x-httpsync-signature"] == f"sha256={openssl_hmac(SECRET, request.body)}"


async def test_sync_completed_is_retried_like_a_batch_and_can_be_rejected(receiver: Receiver) -> None:
    receiver.replies = [Reply(503, None), Reply(204, None), Reply(400, {"error": "unknown mapping"})]
    sink = sink_for(receiver, secret=SECRET)
    try:
        await sink.sync_completed(OWNER, "sync-8", entities=0, full=False)
        with pytest.raises(SinkError) as err:
            await sink.sync_completed(OWNER, "sync-9", entities=1, full=True)
    finally:
        await sink.aclose()
    first, again, rejected = receiver.received
    assert again.body == first.body and again.headers == first.headers  # same key, signature, body
    assert first.json()["full"] is False and first.json()["entities"] == 0
    assert rejected.json()["syncId"] == "sync-9"
    assert err.value.reason == "WebhookRejected" and err.value.stalled
    assert "400 Bad Request" in str(err.value) and "unknown mapping" in str(err.value)


class ReferenceReceiver:
    """The receiver's rule of docs/webhook.md, applied to what the loopback receiver got: entities are
    kept per mapping with the syncId that last sent them; a syncCompleted with ``full`` drops the
    mapping's entities that this sync did not send; one without ``full`` drops nothing."""

    def __init__(self) -> None:
        self.entities: dict[str, dict[tuple[str, str], str | None]] = {}  # mapping -> ref -> syncId

    def apply(self, payload: dict[str, Any]) -> None:
        held = self.entities.setdefault(payload["mapping"], {})
        if payload["type"] == "batch":
            for e in payload["upserts"]:
                held[(e["blueprint"], e["identifier"])] = payload["syncId"]
            for d in payload["deletes"]:
                held.pop((d["blueprint"], d["identifier"]), None)
        elif payload["type"] == "syncCompleted" and payload["full"]:
            for ref in [r for r, sync_id in held.items() if sync_id != payload["syncId"]]:
                del held[ref]

    def identifiers(self, mapping: str) -> list[str]:
        return sorted(identifier for _, identifier in self.entities.get(mapping, {}))


async def test_a_receiver_drops_what_a_full_sync_did_not_send_and_nothing_after_an_incremental_one(
    receiver: Receiver,
) -> None:
    other = "team-a/other-mapping"
    sink = sink_for(receiver)
    try:
        # sync 1 (full): a, b, c; another mapping's entity lives beside them
        await sink.upsert(OWNER, [entity("a"), entity("b"), entity("c")], sync_id="s1")
        await sink.sync_completed(OWNER, "s1", entities=3, full=True)
        await sink.upsert(other, [entity("x")], sync_id="o1")
        await sink.sync_completed(other, "o1", entities=1, full=True)
        # sync 2 (incremental): only b changed; a and c were unchanged, not re-sent
        await sink.upsert(OWNER, [entity("b", title="B2")], sync_id="s2")
        await sink.sync_completed(OWNER, "s2", entities=3, full=False)
        after_incremental = [r.json() for r in receiver.received]
        # sync 3 (full, e.g. after the receiver lost its data): a and b; c was missed by a deletion
        await sink.upsert(OWNER, [entity("a"), entity("b")], sync_id="s3")
        await sink.sync_completed(OWNER, "s3", entities=2, full=True)
    finally:
        await sink.aclose()

    rule = ReferenceReceiver()
    for payload in after_incremental:
        rule.apply(payload)
    assert rule.identifiers(OWNER) == ["a", "b", "c"]  # nothing dropped after an incremental sync
    rule = ReferenceReceiver()
    for request in receiver.received:
        rule.apply(request.json())
    assert rule.identifiers(OWNER) == ["a", "b"]  # c: not sent by the full sync s3
    assert rule.identifiers(other) == ["x"]  # another mapping is never touched
