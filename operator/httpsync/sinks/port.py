"""The Port sink: entities go to a Port organisation through Port's public REST API.

- Auth: ``POST /v1/auth/access_token`` with the client id and secret (:class:`PortTokenAuth`, a
  :class:`httpsync.http.auth.TokenAuth`); the token is cached until shortly before it expires,
  refreshed once when Port answers 401, and concurrent requests share one refresh.
- Upsert: per blueprint, ``POST /v1/blueprints/{bp}/entities/bulk?upsert=true&merge=true`` in
  batches bounded by entity count and body size. Port's per-entity errors become
  :attr:`SinkReport.failed` entries. A 413 splits the batch in halves down to single entities
  (``POST /v1/blueprints/{bp}/entities``); one entity still too large is a failed entry.
- Delete: ``POST /v1/blueprints/{bp}/bulk/entities/delete`` (up to 100 identifiers); when that
  answers 404, 405 or 422 (an older API, an already-deleted entity, an entity with dependents),
  one ``DELETE /v1/blueprints/{bp}/entities/{id}`` per entity, where 404 means already gone.
- Requests are idempotent, so connection and proxy errors, timeouts, 408, 429 and rate-limited
  403s (``Retry-After`` honoured, and holding every request of the sink meanwhile) and 5xx are
  retried with exponential backoff and full jitter, by the HTTP layer's one retry loop
  (:class:`httpsync.http.retry.Retrier`). Other errors on a whole batch raise :class:`SinkError`.

No message contains the client secret or an access token: both are registered with
:func:`register_secret` and every text built from a response goes through :func:`redact`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from httpsync.engine.ports import SinkReport
from httpsync.engine.types import Entity, EntityRef
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError, EngineError, SinkError
from httpsync.http.auth import TokenAuth
from httpsync.http.limits import RequestLimiter
from httpsync.http.policy import check_url_resolved, policy_of
from httpsync.http.redact import register_secret
from httpsync.http.responses import body_start, short, status_text
from httpsync.http.retry import Retrier, RetryPolicy
from httpsync.http.transport import default_transport

EU_BASE_URL = "https://api.getport.io"
US_BASE_URL = "https://api.us.getport.io"

TOKEN_PATH = "/v1/auth/access_token"
UPSERT_PARAMS = {"upsert": "true", "merge": "true"}
DELETE_PARAMS = {"delete_dependents": "false"}
DELETE_BATCH = 100

_BULK_OPEN, _BULK_CLOSE = b'{"entities":[', b"]}"
_AUTH_HINT = "check clientId and clientSecret in the Secret named by sink.port.secretRef"


class PortTokenAuth(TokenAuth):
    """Port's access tokens: ``POST /v1/auth/access_token`` ``{"clientId", "clientSecret"}`` ->
    ``{"accessToken", "expiresIn", "tokenType"}``, sent as ``Authorization: <tokenType> <accessToken>``.

    Used until a minute (at most 10% of its lifetime) before it expires; one hour without
    ``expiresIn``. Its failures are ``PortAuthFailed``.
    """

    MARGIN_SECONDS = 60.0
    DEFAULT_LIFETIME = 3600.0
    TOKEN_FIELD = "accessToken"
    EXPIRES_FIELD = "expiresIn"
    TYPE_FIELD = "tokenType"
    ERROR_REASON = "PortAuthFailed"
    REFUSED_HINT = _AUTH_HINT

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        register_secret(client_secret)
        token_url = base_url.rstrip("/") + TOKEN_PATH
        super().__init__(token_url, endpoint=f"the Port token endpoint {display_url(token_url)}")
        self._body = json.dumps({"clientId": client_id, "clientSecret": client_secret}).encode()

    def build_token_request(self) -> httpx.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "httpsync"}
        return httpx.Request("POST", self.token_url, content=self._body, headers=headers)

    def failure_message(self, response: httpx.Response, retryable: bool) -> str:
        if response.status_code in (401, 403):
            status = status_text(response.status_code)
            return f"{self.endpoint} refused the credentials ({status}): {body_start(response)}; {_AUTH_HINT}"
        return super().failure_message(response, retryable)


class _Encoded(NamedTuple):
    """One entity as Port's JSON, serialised once (its size decides the batches)."""

    identifier: str
    data: bytes


def port_entity(entity: Entity) -> dict[str, Any]:
    """The entity in the shape Port's API takes; null title, icon and team are left out."""
    body: dict[str, Any] = {"identifier": entity["identifier"], "blueprint": entity["blueprint"]}
    for key in ("title", "icon", "team"):
        value = entity.get(key)
        if value is not None:
            body[key] = value
    body["properties"] = entity.get("properties") or {}
    body["relations"] = entity.get("relations") or {}
    return body


def _encode(entity: Entity) -> _Encoded:
    data = json.dumps(port_entity(entity), separators=(",", ":"), ensure_ascii=False).encode()
    return _Encoded(entity["identifier"], data)


def _seg(value: str) -> str:
    """A URL path segment: every reserved character encoded (identifiers may hold ``/``)."""
    return quote(value, safe="")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


class PortSink:
    """Writes entities to Port. One instance per sink configuration; close it with :meth:`aclose`."""

    name = "port"

    MAX_BACKOFF_SECONDS = 30.0
    MAX_RETRY_AFTER_SECONDS = 300.0

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        batch_size: int = 20,
        max_body_bytes: int = 1_048_576,
        timeout: float = 30,
        max_retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        if not base_url.lower().startswith(("https://", "http://")):
            raise ConfigError(f"the Port baseUrl {display_url(base_url)!r} must start with https://")
        if batch_size < 1 or max_body_bytes < 64:
            raise ValueError("batch_size must be >= 1 and max_body_bytes >= 64")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self._check_url = check_url
        self._auth = PortTokenAuth(self.base_url, client_id, client_secret)
        policy = RetryPolicy(max_retries, backoff, self.MAX_BACKOFF_SECONDS, self.MAX_RETRY_AFTER_SECONDS, timeout)
        # No concurrency limit of its own; a 429's Retry-After holds every request of the sink.
        self._retry = Retrier(policy, limiter=RequestLimiter(None), error=SinkError)
        self._http = httpx.AsyncClient(
            auth=self._auth,
            timeout=httpx.Timeout(timeout),
            transport=transport if transport is not None else default_transport(policy=policy_of(check_url)),
            follow_redirects=False,  # the token goes to the Port host only
            headers={"Accept": "application/json", "User-Agent": "httpsync"},
            event_hooks={"request": [self._before_send]},
        )
        self.requests = 0  # HTTP requests sent, token requests included

    @property
    def token_requests(self) -> int:
        """Access tokens asked for."""
        return self._auth.token_requests

    async def aclose(self) -> None:
        await self._http.aclose()

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        """Nothing for now: Port keeps no notion of a sync."""

    # -- requests

    async def _before_send(self, request: httpx.Request) -> None:
        self.requests += 1
        await check_url_resolved(self._check_url, display_url(str(request.url)))

    def _shown(self, path: str) -> str:
        return display_url(self.base_url + path)

    async def _call(
        self, method: str, path: str, *, body: bytes | None = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send one request through the retry loop and return the final response (any status but a
        retryable one). A 401 gets one new token and one resend (the auth flow)."""
        headers = {"Content-Type": "application/json"} if body is not None else None
        url = self.base_url + path
        return await self._retry.send(
            f"{method} {self._shown(path)}",
            lambda: self._http.request(method, url, content=body, params=params, headers=headers),
        )

    async def _get_authorization(self) -> str:
        """The ``Authorization`` value of the current token, one fetched first (through the retry
        loop) if there is none: checks the credentials before any entity is sent."""
        shown = f"POST {self._shown(TOKEN_PATH)}"

        async def send(request: httpx.Request) -> httpx.Response:
            return await self._retry.send(shown, lambda: self._http.send(request, auth=None))

        try:
            return await self._auth.authorization(send)
        except EngineError as e:
            raise self._retry.error(e) from None

    def _status_error(self, response: httpx.Response, what: str) -> SinkError:
        status = response.status_code
        request = response.request
        text = f"{what}: {request.method} {display_url(str(request.url))} returned {status_text(status)}: "
        text += body_start(response)
        if status == 401:
            return SinkError(f"{text}; {_AUTH_HINT}", reason="PortAuthFailed", stalled=True)
        if status == 403:
            return SinkError(
                f"{text}; the Port credentials may not write this blueprint", reason="PortAuthFailed", stalled=True
            )
        return SinkError(text, stalled=status in (400, 404, 405, 410, 413, 422))

    # -- upsert

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        """Upsert ``entities`` (``sync_id`` is not sent: Port has no use for it)."""
        report = SinkReport()
        by_blueprint: dict[str, list[_Encoded]] = {}
        for entity in entities:
            by_blueprint.setdefault(entity["blueprint"], []).append(_encode(entity))
        for blueprint, items in by_blueprint.items():
            for chunk in self._chunks(items):
                await self._upsert_bulk(blueprint, chunk, report)
        return report

    def _chunks(self, items: list[_Encoded]) -> Iterator[list[_Encoded]]:
        """Batches of at most ``batch_size`` entities whose bulk body fits ``max_body_bytes`` (an
        entity larger than that on its own still gets a batch: Port decides)."""
        empty = len(_BULK_OPEN) + len(_BULK_CLOSE)
        chunk: list[_Encoded] = []
        size = empty
        for item in items:
            extra = len(item.data) + (1 if chunk else 0)
            if chunk and (len(chunk) >= self.batch_size or size + extra > self.max_body_bytes):
                yield chunk
                chunk, size, extra = [], empty, len(item.data)
            chunk.append(item)
            size += extra
        if chunk:
            yield chunk

    async def _upsert_bulk(self, blueprint: str, chunk: list[_Encoded], report: SinkReport) -> None:
        body = _BULK_OPEN + b",".join(item.data for item in chunk) + _BULK_CLOSE
        path = f"/v1/blueprints/{_seg(blueprint)}/entities/bulk"
        response = await self._call("POST", path, body=body, params=UPSERT_PARAMS)
        if response.status_code == 413:
            mid = len(chunk) // 2
            halves = [chunk[:mid], chunk[mid:]] if len(chunk) > 1 else [chunk]
            for half in halves:
                if len(half) == 1:
                    await self._upsert_one(blueprint, half[0], report)
                else:
                    await self._upsert_bulk(blueprint, half, report)
            return
        if not response.is_success:
            raise self._status_error(response, f"Port rejected a batch of {len(chunk)} {blueprint!r} entities")
        report.failed.extend(_bulk_failures(blueprint, chunk, _json_or_none(response)))

    async def _upsert_one(self, blueprint: str, item: _Encoded, report: SinkReport) -> None:
        path = f"/v1/blueprints/{_seg(blueprint)}/entities"
        response = await self._call("POST", path, body=item.data, params=UPSERT_PARAMS)
        ref = EntityRef(blueprint, item.identifier)
        status = response.status_code
        if status == 413:
            report.failed.append((ref, f"entity larger than Port accepts ({len(item.data)} bytes of JSON)"))
        elif status in (400, 409, 422):
            report.failed.append((ref, f"Port rejected the entity ({status_text(status)}): {body_start(response)}"))
        elif not response.is_success:
            raise self._status_error(response, f"Port rejected the {blueprint!r} entity {item.identifier!r}")

    # -- delete

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        report = SinkReport()
        by_blueprint: dict[str, list[str]] = {}
        for ref in refs:
            by_blueprint.setdefault(ref.blueprint, []).append(ref.identifier)
        for blueprint, identifiers in by_blueprint.items():
            for start in range(0, len(identifiers), DELETE_BATCH):
                await self._delete_bulk(blueprint, identifiers[start : start + DELETE_BATCH], report)
        return report

    async def _delete_bulk(self, blueprint: str, identifiers: list[str], report: SinkReport) -> None:
        body = json.dumps({"entities": identifiers}, ensure_ascii=False).encode()
        path = f"/v1/blueprints/{_seg(blueprint)}/bulk/entities/delete"
        response = await self._call("POST", path, body=body, params=DELETE_PARAMS)
        if response.status_code in (404, 405, 422):
            # No bulk route (older API), an entity already gone, or one with dependents that fails
            # the whole bulk: one by one, so each entity gets its own outcome.
            for identifier in identifiers:
                await self._delete_one(blueprint, identifier, report)
        elif not response.is_success:
            raise self._status_error(response, f"Port refused to delete {len(identifiers)} {blueprint!r} entities")

    async def _delete_one(self, blueprint: str, identifier: str, report: SinkReport) -> None:
        path = f"/v1/blueprints/{_seg(blueprint)}/entities/{_seg(identifier)}"
        response = await self._call("DELETE", path, params=DELETE_PARAMS)
        status = response.status_code
        if response.is_success or status == 404:  # 404: already gone
            return
        if status in (400, 409, 422):
            message = f"Port refused to delete the entity ({status_text(status)}): {body_start(response)}"
            report.failed.append((EntityRef(blueprint, identifier), message))
            return
        raise self._status_error(response, f"Port refused to delete the {blueprint!r} entity {identifier!r}")


def _bulk_failures(blueprint: str, chunk: list[_Encoded], data: Any) -> list[tuple[EntityRef, str]]:
    """The per-entity errors of a bulk upsert response, as failed refs. ``index`` points into the
    batch; ``identifier`` is the fallback."""
    errors = data.get("errors") if isinstance(data, dict) else None
    failed: list[tuple[EntityRef, str]] = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        index = error.get("index")
        if isinstance(index, int) and 0 <= index < len(chunk):
            identifier = chunk[index].identifier
        else:
            identifier = str(error.get("identifier", ""))
        message = error.get("message") or error.get("error") or "rejected by Port"
        failed.append((EntityRef(blueprint, identifier), short(str(message))))
    return failed
