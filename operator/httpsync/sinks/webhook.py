"""The webhook sink: batches of upserts and deletes, and a message at the end of each successful
sync, POSTed as JSON to a URL you run.

Payloads, headers and the signature recipe are documented in ``docs/webhook.md``. In short::

    {"type": "batch", "source": ..., "mapping": "<namespace>/<name>", "syncId": ..., "upserts": [entity, ...],
     "deletes": [{"blueprint", "identifier"}, ...], "batchId": "<uuid4>", "sentAt": "<RFC 3339 UTC>"}
    {"type": "syncCompleted", "source": ..., "mapping": ..., "syncId": ..., "entities": <count>,
     "full": <bool>, "sentAt": ...}

with ``Idempotency-Key: <uuid4>`` (the batch's ``batchId``; the same on every retry of a message:
the body is built once) and, when a secret is set, ``X-Httpsync-Signature: sha256=<hex HMAC-SHA256
of the body bytes>``.

Connection and proxy errors, timeouts, 408, 429 and rate-limited 403s (``Retry-After`` honoured)
and 5xx are retried with exponential backoff and full jitter by the HTTP layer's one retry loop
(:class:`httpsync.http.retry.Retrier`); any 2xx accepts the message, and an optional JSON answer
to a batch ``{"failed": [{"blueprint", "identifier", "message"}]}`` names entities the receiver
rejected. Other statuses raise :class:`SinkError`. The secret never appears in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from httpsync.engine.ports import SinkReport
from httpsync.engine.types import Entity, EntityRef
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError, SinkError
from httpsync.http.limits import RequestLimiter
from httpsync.http.policy import check_url_resolved, policy_of
from httpsync.http.redact import register_secret
from httpsync.http.responses import body_start, short, status_text
from httpsync.http.retry import Retrier, RetryPolicy
from httpsync.http.transport import default_transport

SIGNATURE_HEADER = "X-Httpsync-Signature"


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Httpsync-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookSink:
    """POSTs entity batches and sync completions to ``url``. Close it with :meth:`aclose`."""

    name = "webhook"

    MAX_BACKOFF_SECONDS = 30.0
    MAX_RETRY_AFTER_SECONDS = 300.0

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        source: str = "",
        batch_size: int = 500,
        timeout: float = 30,
        max_retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        if not url.lower().startswith(("https://", "http://")):
            raise ConfigError(f"the webhook url {display_url(url)!r} must start with https:// or http://")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        register_secret(secret)
        self.url = url
        self._shown_url = display_url(url)
        self._secret = secret.encode() if secret else None
        self.source = source
        self.batch_size = batch_size
        self._check_url = check_url
        policy = RetryPolicy(max_retries, backoff, self.MAX_BACKOFF_SECONDS, self.MAX_RETRY_AFTER_SECONDS, timeout)
        # No concurrency limit of its own; a 429's Retry-After holds every request of the sink.
        self._retry = Retrier(policy, limiter=RequestLimiter(None), error=SinkError)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            transport=transport if transport is not None else default_transport(policy=policy_of(check_url)),
            follow_redirects=False,  # a signed batch goes to the configured URL only
            headers={"User-Agent": "httpsync"},
            event_hooks={"request": [self._before_send]},
        )
        self.requests = 0  # HTTP requests sent

    async def aclose(self) -> None:
        await self._http.aclose()

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        report = SinkReport()
        for start in range(0, len(entities), self.batch_size):
            batch = list(entities[start : start + self.batch_size])
            await self._send_batch(owner, batch, [], report, sync_id)
        return report

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        report = SinkReport()
        for start in range(0, len(refs), self.batch_size):
            batch = refs[start : start + self.batch_size]
            deletes = [{"blueprint": r.blueprint, "identifier": r.identifier} for r in batch]
            await self._send_batch(owner, [], deletes, report, sync_id)
        return report

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        """Tell the receiver that sync ``sync_id`` of mapping ``owner`` ended well: the mapping now has
        ``entities`` entities, and with ``full`` this sync sent every one of them (the receiver may
        drop the mapping's entities it did not send)."""
        payload = {
            "type": "syncCompleted",
            "source": self.source,
            "mapping": owner,
            "syncId": sync_id,
            "entities": entities,
            "full": full,
            "sentAt": _now(),
        }
        await self._post(str(uuid.uuid4()), _dumps(payload))

    def encode(
        self, owner: str, upserts: list[Entity], deletes: list[dict[str, str]], sync_id: str | None = None
    ) -> tuple[str, bytes]:
        """(batch id, body bytes) of one batch."""
        batch_id = str(uuid.uuid4())
        payload = {
            "type": "batch",
            "source": self.source,
            "mapping": owner,
            "syncId": sync_id,
            "upserts": upserts,
            "deletes": deletes,
            "batchId": batch_id,
            "sentAt": _now(),
        }
        return batch_id, _dumps(payload)

    async def _send_batch(
        self,
        owner: str,
        upserts: list[Entity],
        deletes: list[dict[str, str]],
        report: SinkReport,
        sync_id: str | None,
    ) -> None:
        batch_id, body = self.encode(owner, upserts, deletes, sync_id)
        response = await self._post(batch_id, body)
        report.failed.extend(_failures(response))

    async def _before_send(self, request: httpx.Request) -> None:
        self.requests += 1
        await check_url_resolved(self._check_url, self._shown_url)

    async def _post(self, key: str, body: bytes) -> httpx.Response:
        """POST one signed message through the retry loop; its 2xx response, else SinkError."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        response = await self._retry.send(
            f"POST {self._shown_url}", lambda: self._http.post(self.url, content=body, headers=headers)
        )
        if not response.is_success:
            status = response.status_code
            text = f"POST {self._shown_url} returned {status_text(status)}: {body_start(response)}"
            if status in (401, 403):
                text += "; check the signing secret (sink.webhook.secretRef) and the receiver's configuration"
            raise SinkError(text, reason="WebhookRejected", stalled=status in (400, 401, 403, 404, 405, 410, 413, 422))
        return response


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _failures(response: httpx.Response) -> list[tuple[EntityRef, str]]:
    """The receiver's optional ``{"failed": [{"blueprint", "identifier", "message"}]}``."""
    try:
        data: Any = json.loads(response.content) if response.content.strip() else None
    except ValueError:
        return []
    items = data.get("failed") if isinstance(data, dict) else None
    failed: list[tuple[EntityRef, str]] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("identifier") is not None:
            ref = EntityRef(str(item.get("blueprint", "")), str(item["identifier"]))
            failed.append((ref, short(str(item.get("message") or "rejected by the webhook receiver"))))
    return failed
