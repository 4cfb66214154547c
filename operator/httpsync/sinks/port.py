"""The Port sink: entities go to a Port organisation through Port's public REST API.

- Auth: ``POST /v1/auth/access_token`` with the client id and secret (:class:`PortTokenAuth`, a
  :class:`httpsync.http.auth.TokenAuth`); the token is cached until shortly before it expires,
  refreshed once when Port answers 401, and concurrent requests share one refresh.
- Validation: what Port's schema checks (identifier pattern and length, string title and icon,
  the shapes of team and relations) is checked before sending (:func:`entity_problem`); such an
  entity is a :attr:`SinkReport.invalid` entry (a mapping error), never sent.
- Upsert: per blueprint, ``POST /v1/blueprints/{bp}/entities/bulk?upsert=true&merge=true
  &create_missing_related_entities=..`` in batches bounded by entity count and body size, up to
  ``concurrency`` batches at once. Port's per-entity errors (a 207) become :attr:`SinkReport.failed`
  entries quoting Port's message and ``X-Trace-Id``. A batch refused as a whole (400, 413, 422) is
  bisected down to single entities, so one bad entity fails alone and the others land; a single
  entity still too large is a failed entry.
- Missing related entities: with ``create_missing_related_entities`` off, an entity Port refuses
  only because a related entity does not exist yet is *deferred*: failed for now, and sent once
  more by :meth:`PortSink.retry_deferred`, which the runner calls after every mapping of the source
  has pushed (the related entity may come from another mapping).
- Delete: ``POST /v1/blueprints/{bp}/bulk/entities/delete?delete_dependents=..`` (up to 100
  identifiers); only the identifiers of its ``deletedEntities`` count as deleted: the others get a
  ``DELETE /v1/blueprints/{bp}/entities/{id}`` each (404: already gone). A bulk delete refused as a
  whole with any 4xx (an older API, dependents, whatever status Port uses) falls back to one by one
  too; an entity Port still refuses is a failed entry and stays owned.
- Tokens and pacing are per process, shared by every sink with the same base URL and credentials
  (:func:`shared_auth`, :func:`shared_pacer`): one token for every sync and source, paced to Port's
  limits (entities API 35,000 requests / 5 min, token endpoint 100 / 5 min with bursts of 10), and
  a 429's ``Retry-After`` / ``x-ratelimit-reset`` holds every request of those credentials.
- ``User-Agent: httpsync/<version>/<namespace>/<mapping>/exporter``: Port derives each entity's
  datasource from it, so :meth:`PortSink.owned_in_port` finds what a mapping wrote.
- Requests are idempotent, so connection and proxy errors, timeouts, 408, 429 and rate-limited
  403s (``Retry-After`` honoured, and holding every request of the sink meanwhile) and 5xx are
  retried with exponential backoff and full jitter, by the HTTP layer's one retry loop
  (:class:`httpsync.http.retry.Retrier`). Other errors on a whole batch raise :class:`SinkError`.

No message contains the client secret or an access token: both are registered with
:func:`register_secret` and every text built from a response goes through :func:`redact`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from httpsync.engine.ports import SinkReport
from httpsync.engine.types import Entity, EntityRef
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError, EngineError, SinkError
from httpsync.http.auth import TokenAuth
from httpsync.http.limits import RequestLimiter, TokenBucket
from httpsync.http.policy import check_url_resolved, policy_of
from httpsync.http.redact import register_secret
from httpsync.http.responses import body_start, short, status_text
from httpsync.http.retry import Retrier, RetryPolicy
from httpsync.http.transport import default_transport

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("httpsync")
except Exception:  # pragma: no cover - not installed
    VERSION = "0.0.0"

EU_BASE_URL = "https://api.getport.io"
US_BASE_URL = "https://api.us.getport.io"

TOKEN_PATH = "/v1/auth/access_token"
SEARCH_PATH = "/v1/entities/search"
DELETE_BATCH = 100
IDENTIFIER_MAX = 1000
IDENTIFIER_CHARS = frozenset("0123456789@_.+:\\/=-")  # and Unicode letters (\p{L})
# Port's limits (requests, seconds, burst): the entities API and the token endpoint.
ENTITIES_LIMIT = (35_000, 300.0, 100)
TOKEN_LIMIT = (100, 300.0, 10)

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

    @property  # type: ignore[override]
    def _lock(self) -> asyncio.Lock:
        """One lock per event loop: the token is shared by the whole process (:func:`shared_auth`)."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @_lock.setter
    def _lock(self, value: asyncio.Lock) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def build_token_request(self) -> httpx.Request:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": user_agent(None)}
        return httpx.Request("POST", self.token_url, content=self._body, headers=headers)

    def failure_message(self, response: httpx.Response, retryable: bool) -> str:
        if response.status_code in (401, 403):
            status = status_text(response.status_code)
            return f"{self.endpoint} refused the credentials ({status}): {body_start(response)}; {_AUTH_HINT}"
        return super().failure_message(response, retryable)


def _credentials_key(base_url: str, client_id: str, client_secret: str) -> tuple[str, str, str]:
    digest = hashlib.sha256(client_secret.encode()).hexdigest()
    return (base_url.rstrip("/").lower(), client_id, digest)


_AUTHS: dict[tuple[str, str, str], PortTokenAuth] = {}


def shared_auth(base_url: str, client_id: str, client_secret: str) -> PortTokenAuth:
    """The process-wide token of one credential set (base URL, client id, secret hash): every sink
    with these credentials uses the same token until it expires."""
    key = _credentials_key(base_url, client_id, client_secret)
    auth = _AUTHS.get(key)
    if auth is None:
        auth = _AUTHS[key] = PortTokenAuth(base_url, client_id, client_secret)
    return auth


class PortPacer(RequestLimiter):
    """Client-side pacing of one credential set: a token bucket for the entities API (the retry
    loop's limiter, so a server's Retry-After holds every request of the credentials) and one for
    the token endpoint. No concurrency limit (each sink bounds its own)."""

    def __init__(
        self, entities: tuple[float, float, float] = ENTITIES_LIMIT, token: tuple[float, float, float] = TOKEN_LIMIT
    ) -> None:
        super().__init__(None)
        count, window, burst = entities
        # At most ``count`` in any window: the burst comes out of the steady rate.
        self._bucket = TokenBucket(max(1.0, count - burst) / window, burst)
        count, window, burst = token
        self.token_bucket = TokenBucket(max(1.0, count - burst) / window, burst)


_PACERS: dict[tuple[str, str, str], PortPacer] = {}


def shared_pacer(base_url: str, client_id: str, client_secret: str) -> PortPacer:
    """The process-wide pacer of one credential set (see :class:`PortPacer`)."""
    key = _credentials_key(base_url, client_id, client_secret)
    pacer = _PACERS.get(key)
    if pacer is None:
        pacer = _PACERS[key] = PortPacer()
    return pacer


def clear_shared() -> None:
    """Forget every shared token and pacer (tests)."""
    _AUTHS.clear()
    _PACERS.clear()


def user_agent(owner: str | None) -> str:
    """``httpsync/<version>/<namespace>/<mapping>/exporter`` for a mapping's requests (Port derives
    the entities' datasource from it), ``httpsync/<version>`` for the others."""
    base = f"httpsync/{VERSION}"
    return f"{base}/{owner}/exporter" if owner else base


def datasource_rules(owner: str) -> list[dict[str, Any]]:
    """Search rules matching the entities written with the User-Agent of ``owner``, whatever the
    httpsync version that wrote them."""
    return [
        {"property": "$datasource", "operator": "contains", "value": "httpsync/"},
        {"property": "$datasource", "operator": "contains", "value": f"/{owner}/exporter"},
    ]


def _is_search_query(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("combinator"), str) and isinstance(value.get("rules"), list)


def identifier_problem(identifier: Any) -> str | None:
    """Why Port's schema would refuse ``identifier`` (pattern ``^(?!\\.{1,2}$)[\\p{L}0-9@_.+:\\\\/=-]+$``,
    at most 1000 characters), or None."""
    if not isinstance(identifier, str):
        return f"the identifier must be a string for Port, not {type(identifier).__name__}"
    if not identifier:
        return "the identifier is empty"
    if len(identifier) > IDENTIFIER_MAX:
        return f"the identifier has {len(identifier)} characters, Port takes at most {IDENTIFIER_MAX}"
    if identifier in (".", ".."):
        return f"the identifier {identifier!r} is not allowed by Port"
    bad = sorted({c for c in identifier if not (c.isalpha() or c in IDENTIFIER_CHARS)})
    if bad:
        shown = "".join(bad[:10])
        return (
            f"the identifier {short(identifier, 100)!r} has characters Port does not allow ({shown!r}): "
            "use letters, digits and @_.+:\\/=-"
        )
    return None


def entity_problem(entity: Entity) -> str | None:
    """Why Port would refuse the entity as a whole request (its body schema), or None."""
    problem = identifier_problem(entity.get("identifier"))
    if problem is not None:
        return problem
    for key in ("title", "icon"):
        value = entity.get(key)
        if value is not None and not isinstance(value, str):
            return f"{key} must be a string for Port, not {type(value).__name__}"
    team = entity.get("team")
    if team is not None and not (
        isinstance(team, str)
        or (isinstance(team, list) and all(isinstance(t, str) for t in team))
        or _is_search_query(team)
    ):
        return "team must be a string, a list of strings or a search query for Port"
    properties = entity.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return f"properties must be an object for Port, not {type(properties).__name__}"
    relations = entity.get("relations") or {}
    if not isinstance(relations, dict):
        return f"relations must be an object for Port, not {type(relations).__name__}"
    for name, value in relations.items():
        if value is None or isinstance(value, str) or _is_search_query(value):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            continue
        return (
            f"relation {short(str(name), 100)!r} must be an identifier, a list of identifiers, null or a "
            f"search query for Port, not {type(value).__name__}"
        )
    return None


def _trace(response: httpx.Response) -> str:
    trace = response.headers.get("x-trace-id")
    return f" (X-Trace-Id {short(trace, 100)})" if trace else ""


def _related_missing(status: Any, message: str) -> bool:
    """Whether Port refused an entity because a related entity does not exist (yet)."""
    text = message.lower()
    return status == 404 or ("relat" in text and ("not found" in text or "not exist" in text or "missing" in text))


@dataclass
class _Deferred:
    """The entities of one owner waiting for their related entities (one sync's worth)."""

    sync_id: str | None
    entities: dict[tuple[str, str], Entity] = field(default_factory=dict)


MAX_DEFERRED = 100_000  # per owner: beyond, an entity is only failed (retried next sync)


class _Encoded(NamedTuple):
    """One entity as Port's JSON, serialised once (its size decides the batches)."""

    identifier: str
    data: bytes
    entity: Entity


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
    return _Encoded(entity["identifier"], data, entity)


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
        create_missing_related_entities: bool = True,
        delete_dependents: bool = False,
        reconcile_drift: bool = True,
        concurrency: int = 4,
        pacer: PortPacer | None = None,
    ) -> None:
        if not base_url.lower().startswith(("https://", "http://")):
            raise ConfigError(f"the Port baseUrl {display_url(base_url)!r} must start with https://")
        if batch_size < 1 or max_body_bytes < 64 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1 and max_body_bytes >= 64")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.concurrency = concurrency
        self.create_missing_related_entities = create_missing_related_entities
        self.delete_dependents = delete_dependents
        self.reconcile_drift = reconcile_drift
        self._upsert_params = {
            "upsert": "true",
            "merge": "true",
            "create_missing_related_entities": "true" if create_missing_related_entities else "false",
        }
        self._delete_params = {"delete_dependents": "true" if delete_dependents else "false"}
        self._deferred: dict[str, _Deferred] = {}
        self._check_url = check_url
        self._auth = shared_auth(self.base_url, client_id, client_secret)
        self._pacer = pacer if pacer is not None else shared_pacer(self.base_url, client_id, client_secret)
        policy = RetryPolicy(max_retries, backoff, self.MAX_BACKOFF_SECONDS, self.MAX_RETRY_AFTER_SECONDS, timeout)
        # The pacer of the credentials: a 429's Retry-After holds every request made with them.
        self._retry = Retrier(policy, limiter=self._pacer, error=SinkError)
        self._http = httpx.AsyncClient(
            auth=self._auth,
            timeout=httpx.Timeout(timeout),
            transport=transport if transport is not None else default_transport(policy=policy_of(check_url)),
            follow_redirects=False,  # the token goes to the Port host only
            headers={"Accept": "application/json", "User-Agent": user_agent(None)},
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
        if request.url.path.endswith(TOKEN_PATH):
            await self._pacer.token_bucket.acquire()
        await check_url_resolved(self._check_url, display_url(str(request.url)))

    def _shown(self, path: str) -> str:
        return display_url(self.base_url + path)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        owner: str | None = None,
    ) -> httpx.Response:
        """Send one request through the retry loop and return the final response (any status but a
        retryable one). A 401 gets one new token and one resend (the auth flow). ``owner``: the
        mapping the request is for (its User-Agent)."""
        headers = {"User-Agent": user_agent(owner)}
        if body is not None:
            headers["Content-Type"] = "application/json"
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

    async def _bounded(self, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run ``jobs`` with at most ``concurrency`` at once; the first failure cancels the rest
        and is raised as itself."""
        if len(jobs) <= 1 or self.concurrency == 1:
            for job in jobs:
                await job()
            return
        limit = asyncio.Semaphore(self.concurrency)

        async def one(job: Callable[[], Awaitable[None]]) -> None:
            async with limit:
                await job()

        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(one(job))
        except BaseExceptionGroup as eg:
            first = eg.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None

    # -- upsert

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        """Upsert ``entities`` (``sync_id`` is not sent: Port has no use for it; it scopes the
        deferred entities, see :meth:`retry_deferred`)."""
        report = SinkReport()
        by_blueprint: dict[str, list[_Encoded]] = {}
        for entity in entities:
            problem = entity_problem(entity)
            if problem is not None:
                report.invalid.append((EntityRef(str(entity.get("blueprint")), str(entity.get("identifier"))), problem))
                continue
            by_blueprint.setdefault(entity["blueprint"], []).append(_encode(entity))
        deferred = self._deferred_of(owner, sync_id)
        jobs = [
            (lambda bp=blueprint, c=chunk: self._upsert_bulk(owner, bp, c, report, deferred))
            for blueprint, items in by_blueprint.items()
            for chunk in self._chunks(items)
        ]
        await self._bounded(jobs)
        return report

    def _deferred_of(self, owner: str, sync_id: str | None) -> _Deferred | None:
        """Where the entities waiting for a related entity go (None: Port creates those itself)."""
        if self.create_missing_related_entities:
            return None
        current = self._deferred.get(owner)
        if current is None or current.sync_id != sync_id:  # a new sync: the old one's are dropped
            current = self._deferred[owner] = _Deferred(sync_id)
        return current

    async def retry_deferred(self, owner: str) -> tuple[list[Entity], SinkReport] | None:
        """Send once more the entities of ``owner`` that failed only because a related entity did
        not exist: (those that landed now, the report of those that failed again), or None if
        there were none. Called after every mapping of the source has pushed."""
        waiting = self._deferred.pop(owner, None)
        if waiting is None or not waiting.entities:
            return None
        entities = list(waiting.entities.values())
        report = SinkReport()
        by_blueprint: dict[str, list[_Encoded]] = {}
        for entity in entities:
            by_blueprint.setdefault(entity["blueprint"], []).append(_encode(entity))
        jobs = [
            (lambda bp=blueprint, c=chunk: self._upsert_bulk(owner, bp, c, report, None))
            for blueprint, items in by_blueprint.items()
            for chunk in self._chunks(items)
        ]
        await self._bounded(jobs)
        failed = {(r.blueprint, r.identifier) for r, _ in report.failed}
        landed = [e for e in entities if (e["blueprint"], e["identifier"]) not in failed]
        return landed, report

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

    def _fail(
        self,
        report: SinkReport,
        deferred: _Deferred | None,
        blueprint: str,
        item: _Encoded | None,
        identifier: str,
        message: str,
        *,
        related: bool = False,
    ) -> None:
        ref = EntityRef(blueprint, identifier)
        if related and deferred is not None and item is not None and len(deferred.entities) < MAX_DEFERRED:
            deferred.entities[(blueprint, identifier)] = item.entity
            message += " (sent again after the other mappings of the source)"
        report.failed.append((ref, message))

    async def _upsert_bulk(
        self, owner: str, blueprint: str, chunk: list[_Encoded], report: SinkReport, deferred: _Deferred | None
    ) -> None:
        body = _BULK_OPEN + b",".join(item.data for item in chunk) + _BULK_CLOSE
        path = f"/v1/blueprints/{_seg(blueprint)}/entities/bulk"
        response = await self._call("POST", path, body=body, params=self._upsert_params, owner=owner)
        status = response.status_code
        if status in (400, 413, 422):
            # Refused as a whole: an entity too large or one Port's schema refuses (which can fail
            # the whole request). Halves, down to single entities, so only the bad ones fail.
            if len(chunk) == 1:
                await self._upsert_one(owner, blueprint, chunk[0], report, deferred)
                return
            mid = len(chunk) // 2
            for half in (chunk[:mid], chunk[mid:]):
                if len(half) == 1:
                    await self._upsert_one(owner, blueprint, half[0], report, deferred)
                else:
                    await self._upsert_bulk(owner, blueprint, half, report, deferred)
            return
        if not response.is_success:
            raise self._status_error(response, f"Port rejected a batch of {len(chunk)} {blueprint!r} entities")
        data = _json_or_none(response)
        errors = data.get("errors") if isinstance(data, dict) else None
        trace = _trace(response)
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, dict):
                continue
            index = error.get("index")
            item = chunk[index] if isinstance(index, int) and 0 <= index < len(chunk) else None
            identifier = item.identifier if item is not None else str(error.get("identifier", ""))
            if item is None:
                item = next((i for i in chunk if i.identifier == identifier), None)
            message = str(error.get("message") or error.get("error") or "rejected by Port")
            related = _related_missing(error.get("statusCode"), message)
            self._fail(report, deferred, blueprint, item, identifier, short(message) + trace, related=related)

    async def _upsert_one(
        self, owner: str, blueprint: str, item: _Encoded, report: SinkReport, deferred: _Deferred | None
    ) -> None:
        path = f"/v1/blueprints/{_seg(blueprint)}/entities"
        response = await self._call("POST", path, body=item.data, params=self._upsert_params, owner=owner)
        status = response.status_code
        if response.is_success:
            return
        trace = _trace(response)
        if status == 413:
            message = f"entity larger than Port accepts ({len(item.data)} bytes of JSON){trace}"
            self._fail(report, deferred, blueprint, item, item.identifier, message)
            return
        text = body_start(response)
        related = status == 404 and _related_missing(None, text)
        if status in (400, 409, 422) or related:
            message = f"Port rejected the entity ({status_text(status)}): {text}{trace}"
            self._fail(report, deferred, blueprint, item, item.identifier, message, related=related)
            return
        raise self._status_error(response, f"Port rejected the {blueprint!r} entity {item.identifier!r}")

    # -- delete

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        report = SinkReport()
        by_blueprint: dict[str, list[str]] = {}
        for ref in refs:
            by_blueprint.setdefault(ref.blueprint, []).append(ref.identifier)
        jobs = [
            (
                lambda bp=blueprint, ids=identifiers[start : start + DELETE_BATCH]: self._delete_bulk(
                    owner, bp, ids, report
                )
            )
            for blueprint, identifiers in by_blueprint.items()
            for start in range(0, len(identifiers), DELETE_BATCH)
        ]
        await self._bounded(jobs)
        return report

    async def _delete_bulk(self, owner: str, blueprint: str, identifiers: list[str], report: SinkReport) -> None:
        body = json.dumps({"entities": identifiers}, ensure_ascii=False).encode()
        path = f"/v1/blueprints/{_seg(blueprint)}/bulk/entities/delete"
        response = await self._call("POST", path, body=body, params=self._delete_params, owner=owner)
        status = response.status_code
        if 400 <= status < 500 and status not in (401, 403):
            # No bulk route (older API), or refused as a whole (dependents, whatever status Port
            # uses for it): one by one, so each entity gets its own outcome.
            for identifier in identifiers:
                await self._delete_one(owner, blueprint, identifier, report)
            return
        if not response.is_success:
            raise self._status_error(response, f"Port refused to delete {len(identifiers)} {blueprint!r} entities")
        data = _json_or_none(response)
        listed = data.get("deletedEntities") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            return  # an answer without the list: taken as all deleted
        deleted = {str(i.get("identifier") if isinstance(i, dict) else i) for i in listed}
        # Only those listed were deleted; the others (already gone, or refused) one by one.
        for identifier in identifiers:
            if identifier not in deleted:
                await self._delete_one(owner, blueprint, identifier, report)

    async def _delete_one(self, owner: str, blueprint: str, identifier: str, report: SinkReport) -> None:
        path = f"/v1/blueprints/{_seg(blueprint)}/entities/{_seg(identifier)}"
        response = await self._call("DELETE", path, params=self._delete_params, owner=owner)
        status = response.status_code
        if response.is_success or status == 404:  # 404: already gone
            return
        if 400 <= status < 500 and status not in (401, 403):
            hint = "" if self.delete_dependents else " (if other entities depend on it: sink.port.deleteDependents)"
            text = f"{body_start(response)}{_trace(response)}"
            message = f"Port refused to delete the entity ({status_text(status)}): {text}{hint}"
            report.failed.append((EntityRef(blueprint, identifier), message))
            return
        raise self._status_error(response, f"Port refused to delete the {blueprint!r} entity {identifier!r}")

    # -- ownership

    async def owned_in_port(self, owner: str, blueprints: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """The entities of ``blueprints`` Port says ``owner`` wrote (its datasource, from the
        User-Agent): one search per blueprint. (blueprint, identifier) -> Port's entity."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for blueprint in blueprints or [None]:  # no blueprint known: one search by datasource alone
            rules = datasource_rules(owner)
            if blueprint is not None:
                rules = [{"property": "$blueprint", "operator": "=", "value": blueprint}, *rules]
            query = json.dumps({"combinator": "and", "rules": rules}).encode()
            response = await self._call("POST", SEARCH_PATH, body=query, owner=owner)
            if not response.is_success:
                what = f"the {blueprint!r} entities" if blueprint else "the entities"
                raise self._status_error(response, f"Port refused to search {what} of {owner} (reconcileDrift)")
            data = _json_or_none(response)
            entities = data.get("entities") if isinstance(data, dict) else None
            for e in entities if isinstance(entities, list) else []:
                if isinstance(e, dict) and isinstance(e.get("identifier"), str):
                    bp = blueprint or e.get("blueprint")
                    if isinstance(bp, str):
                        found[(bp, e["identifier"])] = e
        return found
