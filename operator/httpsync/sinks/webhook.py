"""The webhook sink: batches of upserts and deletes POSTed as JSON to a URL you run.

Payload, headers and the signature recipe are documented in ``docs/webhook.md``. In short::

    {"source": ..., "mapping": "<namespace>/<name>", "upserts": [entity, ...],
     "deletes": [{"blueprint", "identifier"}, ...], "batchId": "<uuid4>", "sentAt": "<RFC 3339 UTC>"}

with ``Idempotency-Key: <batchId>`` (the same on every retry of a batch: the body is built once)
and, when a secret is set, ``X-Httpsync-Signature: sha256=<hex HMAC-SHA256 of the body bytes>``.

Connection errors, timeouts, 408, 429 (``Retry-After`` honoured) and 5xx are retried with
exponential backoff and full jitter; any 2xx accepts the batch, and an optional JSON answer
``{"failed": [{"blueprint", "identifier", "message"}]}`` names entities the receiver rejected.
Other statuses raise :class:`SinkError`. The secret never appears in a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from httpsync.engine.client import body_start, retry_delay, status_text
from httpsync.engine.types import Entity, EntityRef
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError, SinkError
from httpsync.http.redact import redact, register_secret
from httpsync.sinks.base import SinkReport

SIGNATURE_HEADER = "X-Httpsync-Signature"
MESSAGE_MAX = 300

_RETRY_STATUSES = frozenset({408, 429})
_RETRY_EXCEPTIONS = (TimeoutError, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Httpsync-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookSink:
    """POSTs entity batches to ``url``. Close it with :meth:`aclose`."""

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
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._backoff = backoff
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,  # a signed batch goes to the configured URL only
            headers={"User-Agent": "httpsync"},
        )
        self.requests = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def upsert(self, owner: str, entities: Sequence[Entity]) -> SinkReport:
        report = SinkReport()
        for start in range(0, len(entities), self.batch_size):
            batch = list(entities[start : start + self.batch_size])
            await self._send_batch(owner, batch, [], report)
        return report

    async def delete(self, owner: str, refs: Sequence[EntityRef]) -> SinkReport:
        report = SinkReport()
        for start in range(0, len(refs), self.batch_size):
            batch = refs[start : start + self.batch_size]
            deletes = [{"blueprint": r.blueprint, "identifier": r.identifier} for r in batch]
            await self._send_batch(owner, [], deletes, report)
        return report

    def encode(self, owner: str, upserts: list[Entity], deletes: list[dict[str, str]]) -> tuple[str, bytes]:
        """(batch id, body bytes) of one batch."""
        batch_id = str(uuid.uuid4())
        payload = {
            "source": self.source,
            "mapping": owner,
            "upserts": upserts,
            "deletes": deletes,
            "batchId": batch_id,
            "sentAt": _now(),
        }
        return batch_id, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    async def _send_batch(
        self, owner: str, upserts: list[Entity], deletes: list[dict[str, str]], report: SinkReport
    ) -> None:
        batch_id, body = self.encode(owner, upserts, deletes)
        headers = {"Content-Type": "application/json", "Idempotency-Key": batch_id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        response = await self._post(body, headers)
        if not response.is_success:
            status = response.status_code
            text = f"POST {self._shown_url} returned {status_text(status)}: {body_start(response)}"
            if status in (401, 403):
                text += "; check the signing secret (sink.webhook.secretRef) and the receiver's configuration"
            raise SinkError(text, reason="WebhookRejected", stalled=status in (400, 401, 403, 404, 405, 410, 413, 422))
        report.failed.extend(_failures(response))

    async def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST the batch, retrying what a retry can fix; the final non-retryable response."""
        attempts = 1 + self._max_retries
        failure = ""
        for attempt in range(attempts):
            self.requests += 1
            response: httpx.Response | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._http.post(self.url, content=body, headers=headers)
            except _RETRY_EXCEPTIONS as e:
                failure = f"timed out after {self._timeout:g} s" if isinstance(e, TimeoutError) else "failed"
                failure += f" ({type(e).__name__}: {_short(str(e)) or 'no detail'})"
            except httpx.HTTPError as e:
                raise SinkError(f"POST {self._shown_url} failed: {type(e).__name__}: {_short(str(e))}") from None
            else:
                status = response.status_code
                if not (status in _RETRY_STATUSES or status >= 500):
                    return response
                failure = f"returned {status_text(status)}: {body_start(response)}"
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, response))
        raise SinkError(f"POST {self._shown_url} {failure} ({attempts} attempts)")

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        return retry_delay(
            attempt,
            response,
            base=self._backoff,
            cap=self.MAX_BACKOFF_SECONDS,
            max_retry_after=self.MAX_RETRY_AFTER_SECONDS,
        )


def _short(text: str) -> str:
    text = redact(" ".join(text.split()))
    return text[:MESSAGE_MAX] + "..." if len(text) > MESSAGE_MAX else text


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
            failed.append((ref, _short(str(item.get("message") or "rejected by the webhook receiver"))))
    return failed
