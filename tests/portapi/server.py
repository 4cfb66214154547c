"""A real HTTP emulator of Port's public REST API, for the Port sink's tests.

Runs on 127.0.0.1 (a random free port) inside the tests (:class:`PortApi`, fixture ``portapi`` in
``tests.portapi.fixtures``) or standalone::

    python -m tests.portapi.server --port 8098

Entities live in memory per blueprint (``state.entities[blueprint][identifier]``). Every request
is logged (``state.log``: method, decoded path, raw path, query, headers, body bytes, arrival time,
status).

Endpoints (the contract of https://docs.port.io/api-reference):

  POST   /v1/auth/access_token                        {"clientId","clientSecret"} ->
                                                      {"ok","accessToken","expiresIn","tokenType"}
  POST   /v1/blueprints/{bp}/entities/bulk            {"entities":[...]} (<= 20), ?upsert&merge ->
                                                      200 or 207 {"ok","entities":[{index,identifier,created}],
                                                      "errors":[{index,identifier,statusCode,error,message}]}
  POST   /v1/blueprints/{bp}/entities                 one entity, ?upsert&merge -> 200/201 or 422
  POST   /v1/blueprints/{bp}/bulk/entities/delete     {"entities":[ids]} (<= 100) -> {"ok","deletedEntities"};
                                                      422 for the whole request if one has dependents
  DELETE /v1/blueprints/{bp}/entities/{id}            404 if missing, 422 if it has dependents
  POST   /v1/entities/search                          {"combinator","rules"} -> {"ok","entities"}; rules on
                                                      $datasource, $blueprint, $identifier (=, in, contains)

Every answer carries an ``X-Trace-Id``. Identifiers follow the contract (:func:`identifier_problem`: Unicode
letters, digits and ``@_.+:\\/=-``, not ``.`` or ``..``, at most 1000 characters); with ``whole_request_422``
(default True, Port's behaviour is unverified) one entity with a bad identifier or a non-string title/icon
fails the whole bulk request with 422, otherwise it is a per-entity error of a 207; ``reject_request``
(identifier -> message) fails every request holding that entity with 422 (a schema the sink cannot check).
``max_in_flight``: the most entities API requests in its ``latency`` at once. ``relation_targets`` (blueprint
-> relation -> target blueprint) makes relations checked: a missing target is created as a bare entity with
``create_missing_related_entities=true``, else the entity fails with 404 "related entity not found".
``dependents_status`` is the status of a bulk delete refused for dependents; ``undeletable`` (identifier ->
message) are left out of ``deletedEntities`` by the bulk delete and refused (409) one by one. ``rate_limits``
(name -> (requests, window seconds, burst)) for ``entities`` and ``token`` answer 429 with ``x-ratelimit-
reset`` (epoch seconds) beyond them (``rate_limited`` counts them); ``latency`` delays every entities API
answer, ``write_delay`` (blueprint -> seconds) the bulk upserts of a blueprint (to make another mapping's
entities arrive first). Entities remember the datasource Port derives from the writer's ``User-Agent``
(``state.datasource``). Knobs on :class:`PortState`: ``token_ttl`` (expiresIn, seconds, may be fractional),
``revoke_tokens()`` (current tokens answer 401), ``token_requests``, ``reject`` (identifier -> per-entity
error message), ``blueprints`` (None: every blueprint exists; a set: others answer 404), ``max_body_bytes``
(larger bodies answer 413), ``bulk_delete_enabled`` (False: the bulk delete route answers 404, like an older
API), ``dependents`` (identifiers whose deletion fails), ``inject(status, times, retry_after=...,
headers=...)`` (the next requests to /v1/blueprints answer that status, with a ``Retry-After`` and other
headers; ``token=True`` for the token endpoint), ``echo_credentials`` (error bodies repeat the Authorization
header and client secret they got: a careless server, for redaction tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.loopback import LoopbackServer

CLIENT_ID = "port-client-id-5c1f0a"
CLIENT_SECRET = "port-client-secret-7e2b94d1c3"
IDENTIFIER_PATTERN = r"^(?!\.{1,2}$)[\p{L}0-9@_.+:\\/=-]+$"
IDENTIFIER_CHARS = frozenset("0123456789@_.+:\\/=-")
IDENTIFIER_MAX = 1000
# Port's published limits: entities API 35,000 / 5 min, token endpoint 100 / 5 min with bursts of 10.
PORT_RATE_LIMITS: dict[str, tuple[int, float, int]] = {"entities": (35_000, 300.0, 35_000), "token": (100, 300.0, 10)}
BULK_MAX = 20
DELETE_BULK_MAX = 100
BLUEPRINTS_PREFIX = "/v1/blueprints/"
SEARCH_PATH = "/v1/entities/search"


@dataclass
class LoggedRequest:
    method: str
    path: str  # decoded
    raw_path: str  # as sent (percent-encoded), query included
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None = None
    time: float = 0.0  # time.monotonic() at arrival

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    headers: dict[str, str] | None = None


@dataclass
class PortState:
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    blueprints: set[str] | None = None
    token_ttl: float = 3600.0
    token_requests: int = 0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    reject: dict[str, str] = field(default_factory=dict)
    dependents: set[str] = field(default_factory=set)
    max_body_bytes: int | None = None
    bulk_delete_enabled: bool = True
    echo_credentials: bool = False
    whole_request_422: bool = True
    reject_request: dict[str, str] = field(default_factory=dict)  # identifier -> whole-request 422 message
    in_flight: int = 0
    max_in_flight: int = 0  # most entities API requests handled at once
    relation_targets: dict[str, dict[str, str]] = field(default_factory=dict)
    dependents_status: int = 422
    undeletable: dict[str, str] = field(default_factory=dict)
    rate_limits: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    rate_limited: int = 0
    latency: float = 0.0
    write_delay: dict[str, float] = field(default_factory=dict)  # blueprint -> seconds before its upserts are handled
    datasource: dict[tuple[str, str], str] = field(default_factory=dict)  # (bp, id) -> User-Agent datasource
    searches: int = 0
    _windows: dict[str, list[float]] = field(default_factory=dict)  # name -> [window start, count, bucket]
    faults: list[Fault] = field(default_factory=list)
    token_faults: list[Fault] = field(default_factory=list)
    log: list[LoggedRequest] = field(default_factory=list)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def inject(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
        token: bool = False,
    ) -> None:
        """The next ``times`` requests (to /v1/blueprints, or to the token endpoint) answer ``status``
        (with ``Retry-After: retry_after`` and ``headers``)."""
        faults = self.token_faults if token else self.faults
        faults.extend(Fault(status, retry_after, headers) for _ in range(times))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.log if r.path.startswith(path_prefix) and (method is None or r.method == method)]

    def entity(self, blueprint: str, identifier: str) -> dict[str, Any] | None:
        return self.entities.get(blueprint, {}).get(identifier)

    def count(self, blueprint: str | None = None) -> int:
        if blueprint is not None:
            return len(self.entities.get(blueprint, {}))
        return sum(len(v) for v in self.entities.values())

    def bulk_upserts(self) -> list[LoggedRequest]:
        return [r for r in self.log if r.method == "POST" and r.path.endswith("/entities/bulk")]


STATE = web.AppKey("state", PortState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> PortState:
    return request.app[STATE]


def _error(status: int, error: str, message: str, request: web.Request | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": error, "message": message}
    if request is not None and _state(request).echo_credentials:
        body["receivedAuthorization"] = request.headers.get("Authorization", "")
    return web.json_response(body, status=status)


def _authorized(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ")
    return auth.startswith("Bearer ") and _state(request).tokens.get(token, 0.0) > time.monotonic()


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log, then what Port does before a handler: body size limit, injected faults, auth."""
    state = _state(request)
    body = await request.read() if request.can_read_body else b""
    entry = LoggedRequest(
        method=request.method,
        path=request.path,
        raw_path=request.raw_path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        time=time.monotonic(),
    )
    state.log.append(entry)
    trace_id = secrets.token_hex(8)
    try:
        response = await _pre_handler(request, state, body) or await handler(request)
    except web.HTTPException as e:
        entry.status = e.status
        e.headers["X-Trace-Id"] = trace_id
        raise
    entry.status = response.status
    response.headers["X-Trace-Id"] = trace_id
    return response


def _over_limit(state: PortState, name: str) -> float | None:
    """None if the request fits the limit ``name`` (a window of N requests, and a bucket of ``burst``
    refilled at N per window), else the epoch second it resets at."""
    limit = state.rate_limits.get(name)
    if limit is None:
        return None
    count, window, burst = limit
    now = time.monotonic()
    w = state._windows.setdefault(name, [now, 0.0, float(burst), now])
    if now - w[0] >= window:
        w[0], w[1] = now, 0.0
    w[2] = min(float(burst), w[2] + (now - w[3]) * count / window)
    w[3] = now
    if w[1] >= count or w[2] < 1.0:
        wait = window - (now - w[0]) if w[1] >= count else (1.0 - w[2]) * window / count
        return time.time() + wait
    w[1] += 1
    w[2] -= 1.0
    return None


async def _pre_handler(request: web.Request, state: PortState, body: bytes) -> web.Response | None:
    is_token = request.path == "/v1/auth/access_token"
    if state.max_body_bytes is not None and len(body) > state.max_body_bytes:
        return _error(413, "payload_too_large", f"Request body is too large (limit is {state.max_body_bytes} bytes)")
    is_entities = request.path.startswith(BLUEPRINTS_PREFIX) or request.path == SEARCH_PATH
    reset = _over_limit(state, "token" if is_token else "entities") if is_token or is_entities else None
    if reset is not None:
        state.rate_limited += 1
        headers = {"x-ratelimit-reset": str(int(reset) + 1)}
        return web.json_response({"ok": False, "error": "too_many_requests"}, status=429, headers=headers)
    if is_entities and state.latency:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(state.latency)
        finally:
            state.in_flight -= 1
    faults = state.token_faults if is_token else state.faults
    if faults and (is_token or is_entities):
        fault = faults.pop(0)
        headers = dict(fault.headers or {})
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        payload = {"ok": False, "error": "injected", "status": fault.status}
        return web.json_response(payload, status=fault.status, headers=headers)
    if is_entities and not _authorized(request):
        return _error(401, "unauthorized", "the access token is missing, invalid or expired", request)
    return None


# --------------------------------------------------------------------------- auth


async def access_token(request: web.Request) -> web.Response:
    state = _state(request)
    state.token_requests += 1
    try:
        data = json.loads(await request.read())
    except ValueError:
        return _error(422, "invalid_request", "the body is not JSON")
    client_id, client_secret = data.get("clientId"), data.get("clientSecret")
    if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
        message = "invalid client credentials"
        if state.echo_credentials:
            message += f" (clientId {client_id!r}, clientSecret {client_secret!r})"
        return _error(401, "unauthorized", message)
    token = f"port-at-{state.token_requests}-{secrets.token_hex(16)}"
    state.tokens[token] = time.monotonic() + state.token_ttl
    ttl = state.token_ttl
    return web.json_response(
        {"ok": True, "accessToken": token, "expiresIn": int(ttl) if ttl >= 1 else ttl, "tokenType": "Bearer"}
    )


# --------------------------------------------------------------------------- entities


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _blueprint(request: web.Request) -> str | None:
    """The blueprint of the request, or None if it does not exist."""
    bp = request.match_info["bp"]
    known = _state(request).blueprints
    return bp if known is None or bp in known else None


def identifier_problem(identifier: Any) -> str | None:
    """Why Port's schema refuses the identifier, or None."""
    if not isinstance(identifier, str):
        return f"identifier must be a string, not {type(identifier).__name__}"
    if len(identifier) > IDENTIFIER_MAX:
        return f"identifier must NOT have more than {IDENTIFIER_MAX} characters"
    if not identifier or identifier in (".", "..") or not all(c.isalpha() or c in IDENTIFIER_CHARS for c in identifier):
        return f'identifier {identifier!r} must match pattern "{IDENTIFIER_PATTERN}"'
    return None


def _schema_error(entity: Any) -> tuple[str, str] | None:
    """(error, message) if the entity does not match the route's body schema."""
    if not isinstance(entity, dict):
        return "invalid_entity", "an entity must be an object"
    problem = identifier_problem(entity.get("identifier"))
    if problem is not None:
        return "invalid_identifier", problem
    for key in ("title", "icon"):
        if key in entity and not isinstance(entity[key], str):
            return "invalid_request", f"body/{key} must be string"
    return None


def _missing_related(state: PortState, bp: str, entity: dict[str, Any]) -> list[tuple[str, str]]:
    """The (blueprint, identifier) targets of the entity's relations that do not exist."""
    missing = []
    for relation, target_bp in state.relation_targets.get(bp, {}).items():
        value = (entity.get("relations") or {}).get(relation)
        targets = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        missing += [(target_bp, t) for t in targets if t not in state.entities.get(target_bp, {})]
    return missing


def _entity_error(state: PortState, bp: str, entity: Any, upsert: bool) -> tuple[str, str] | None:
    """(error, message) if the entity cannot be written."""
    problem = _schema_error(entity)
    if problem is not None:
        return problem
    identifier = entity.get("identifier")
    if entity.get("blueprint", bp) != bp:
        return "blueprint_mismatch", f"entity blueprint {entity.get('blueprint')!r} is not {bp!r}"
    if identifier in state.reject:
        return "entity_rejected", state.reject[identifier]
    if not upsert and identifier in state.entities.get(bp, {}):
        return "identifier_taken", f"an entity {identifier!r} already exists"
    return None


def _related_error(request: web.Request, bp: str, entity: dict[str, Any]) -> str | None:
    """The 404 message when a related entity is missing (created instead with
    ``create_missing_related_entities=true``)."""
    state = _state(request)
    missing = _missing_related(state, bp, entity)
    if not missing:
        return None
    if not _flag(request, "create_missing_related_entities"):
        target_bp, target = missing[0]
        return f"related entity {target!r} of blueprint {target_bp!r} was not found"
    for target_bp, target in missing:
        state.entities.setdefault(target_bp, {})[target] = {
            "identifier": target, "blueprint": target_bp, "properties": {}, "relations": {},
        }  # fmt: skip
        state.datasource[(target_bp, target)] = _datasource(request)
    return None


def _datasource(request: web.Request) -> str:
    """What Port records as the writer of an entity: derived from the User-Agent."""
    return request.headers.get("User-Agent", "")


def _store(state: PortState, bp: str, entity: dict[str, Any], merge: bool, datasource: str = "") -> bool:
    """Write the entity (merged into the existing one with ``merge``); True if it was created."""
    state.datasource[(bp, entity["identifier"])] = datasource
    stored = state.entities.setdefault(bp, {})
    identifier = entity["identifier"]
    old = stored.get(identifier)
    new = {
        "identifier": identifier,
        "blueprint": bp,
        "properties": dict(entity.get("properties") or {}),
        "relations": dict(entity.get("relations") or {}),
    }
    for key in ("title", "icon", "team"):
        if key in entity:
            new[key] = entity[key]
    if merge and old is not None:
        merged = {**old, **{k: v for k, v in new.items() if k not in ("properties", "relations")}}
        merged["properties"] = {**old.get("properties", {}), **new["properties"]}
        merged["relations"] = {**old.get("relations", {}), **new["relations"]}
        new = merged
    stored[identifier] = new
    return old is None


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        text = '{"ok": false, "error": "invalid_json"}'
        raise web.HTTPBadRequest(text=text, content_type="application/json") from None


async def bulk_upsert(request: web.Request) -> web.Response:
    state = _state(request)
    bp = _blueprint(request)
    if bp is None:
        return _error(404, "not_found", f"blueprint {request.match_info['bp']!r} was not found", request)
    if state.write_delay.get(bp):
        await asyncio.sleep(state.write_delay[bp])
    data = await _json_body(request)
    entities = data.get("entities") if isinstance(data, dict) else None
    if not isinstance(entities, list) or not 1 <= len(entities) <= BULK_MAX:
        return _error(422, "invalid_request", f"body/entities must be an array of 1 to {BULK_MAX} items", request)
    for index, entity in enumerate(entities):
        problem = _schema_error(entity) if state.whole_request_422 else None
        if problem is None and isinstance(entity, dict) and entity.get("identifier") in state.reject_request:
            problem = ("invalid_request", state.reject_request[entity["identifier"]])
        if problem is not None:
            return _error(422, problem[0], f"body/entities/{index}: {problem[1]}", request)
    upsert, merge = _flag(request, "upsert"), _flag(request, "merge")
    done: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, entity in enumerate(entities):
        problem = _entity_error(state, bp, entity, upsert)
        identifier = entity.get("identifier") if isinstance(entity, dict) else None
        status = 422
        if problem is None and (related := _related_error(request, bp, entity)) is not None:
            problem, status = ("not_found", related), 404
        if problem is not None:
            error, message = problem
            errors.append(
                {"index": index, "identifier": identifier, "statusCode": status, "error": error, "message": message}
            )
            continue
        created = _store(state, bp, entity, merge, _datasource(request))
        done.append({"index": index, "identifier": identifier, "created": created})
    return web.json_response({"ok": not errors, "entities": done, "errors": errors}, status=207 if errors else 200)


async def single_upsert(request: web.Request) -> web.Response:
    state = _state(request)
    bp = _blueprint(request)
    if bp is None:
        return _error(404, "not_found", f"blueprint {request.match_info['bp']!r} was not found", request)
    entity = await _json_body(request)
    problem = _entity_error(state, bp, entity, _flag(request, "upsert"))
    if problem is None and isinstance(entity, dict) and entity.get("identifier") in state.reject_request:
        problem = ("invalid_request", state.reject_request[entity["identifier"]])
    if problem is not None:
        return _error(422, *problem, request)
    related = _related_error(request, bp, entity)
    if related is not None:
        return _error(404, "not_found", related, request)
    created = _store(state, bp, entity, _flag(request, "merge"), _datasource(request))
    body = {"ok": True, "entity": state.entity(bp, entity["identifier"])}
    return web.json_response(body, status=201 if created else 200)


async def bulk_delete(request: web.Request) -> web.Response:
    state = _state(request)
    if not state.bulk_delete_enabled:
        return _error(404, "not_found", f"Route POST:{request.path} not found")
    bp = _blueprint(request)
    if bp is None:
        return _error(404, "not_found", f"blueprint {request.match_info['bp']!r} was not found", request)
    data = await _json_body(request)
    ids = data.get("entities") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not 1 <= len(ids) <= DELETE_BULK_MAX or not all(isinstance(i, str) for i in ids):
        return _error(422, "invalid_request", f"body/entities must be 1 to {DELETE_BULK_MAX} identifiers", request)
    blocked = [i for i in ids if i in state.dependents]
    if blocked and not _flag(request, "delete_dependents"):
        return _error(state.dependents_status, "has_dependents", f"entities {blocked} have dependent entities", request)
    stored = state.entities.get(bp, {})
    deleted = [i for i in ids if i not in state.undeletable and stored.pop(i, None) is not None]
    return web.json_response({"ok": True, "deletedEntities": deleted})


async def single_delete(request: web.Request) -> web.Response:
    """The identifier is read from the raw path, so an encoded ``/`` stays inside it."""
    state = _state(request)
    bp = _blueprint(request)
    raw = request.raw_path.split("?", 1)[0]
    identifier = unquote(raw.rsplit("/entities/", 1)[1])
    stored = state.entities.get(bp, {}) if bp is not None else {}
    if identifier not in stored:
        return _error(404, "not_found", f"entity {identifier!r} was not found", request)
    if identifier in state.dependents and not _flag(request, "delete_dependents"):
        return _error(state.dependents_status, "has_dependents", f"entity {identifier!r} has dependents", request)
    if identifier in state.undeletable:
        return _error(409, "delete_refused", state.undeletable[identifier], request)
    del stored[identifier]
    return web.json_response({"ok": True})


def _rule_matches(rule: Any, bp: str, identifier: str, datasource: str) -> bool:
    if not isinstance(rule, dict):
        return False
    if "rules" in rule:
        return _query_matches(rule, bp, identifier, datasource)
    value = {"$blueprint": bp, "$identifier": identifier, "$datasource": datasource}.get(rule.get("property"))
    operator, wanted = rule.get("operator"), rule.get("value")
    if value is None:
        return False
    if operator == "=":
        return value == wanted
    if operator == "in":
        return isinstance(wanted, list) and value in wanted
    if operator == "contains":
        return isinstance(wanted, str) and wanted in value
    return False


def _query_matches(query: dict[str, Any], bp: str, identifier: str, datasource: str) -> bool:
    rules = query.get("rules") or []
    matches = (_rule_matches(r, bp, identifier, datasource) for r in rules)
    return any(matches) if query.get("combinator") == "or" else all(matches)


async def search(request: web.Request) -> web.Response:
    """``POST /v1/entities/search`` ``{combinator, rules}``: the matching entities (all of them)."""
    state = _state(request)
    state.searches += 1
    query = await _json_body(request)
    if not isinstance(query, dict) or query.get("combinator") not in ("and", "or") or "rules" not in query:
        return _error(422, "invalid_request", "body must be {combinator, rules}", request)
    found = [
        entity
        for bp, stored in state.entities.items()
        for identifier, entity in stored.items()
        if _query_matches(query, bp, identifier, state.datasource.get((bp, identifier), ""))
    ]
    return web.json_response({"ok": True, "entities": found})


# --------------------------------------------------------------------------- app


def make_app(state: PortState | None = None) -> web.Application:
    app = web.Application(middlewares=[_gate], client_max_size=64 * 1024 * 1024)
    app[STATE] = state or PortState()
    r = app.router
    r.add_post("/v1/auth/access_token", access_token)
    r.add_post("/v1/blueprints/{bp}/entities/bulk", bulk_upsert)
    r.add_post("/v1/blueprints/{bp}/entities", single_upsert)
    r.add_post("/v1/blueprints/{bp}/bulk/entities/delete", bulk_delete)
    r.add_delete("/v1/blueprints/{bp}/entities/{tail:.+}", single_delete)
    r.add_post(SEARCH_PATH, search)
    return app


class PortApi(LoopbackServer):
    """The emulator running in the test's event loop on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.state = PortState()
        super().__init__(make_app(self.state))

    @property
    def log(self) -> list[LoggedRequest]:
        return self.state.log


async def stats(request: web.Request) -> web.Response:
    """``GET /_stats`` (the emulator's own, for benchmarks): what it counted."""
    state = _state(request)
    return web.json_response(
        {
            "entities": state.count(),
            "tokenRequests": state.token_requests,
            "rateLimited": state.rate_limited,
            "requests": len(state.log),
            "maxInFlight": state.max_in_flight,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="httpsync's Port API emulator (see the module docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every entities API answer")
    parser.add_argument("--port-limits", action="store_true", help="answer 429 beyond Port's published rate limits")
    parser.add_argument("--no-log", action="store_true", help="keep no request log (long benchmarks)")
    args = parser.parse_args(argv)
    state = PortState(latency=args.latency_ms / 1000.0, rate_limits=dict(PORT_RATE_LIMITS) if args.port_limits else {})
    app = make_app(state)
    app.router.add_get("/_stats", stats)
    if args.no_log:
        state.log = _NoLog()
    print(f"Port emulator on http://{args.host}:{args.port} (clientId {CLIENT_ID!r}, clientSecret {CLIENT_SECRET!r})")
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


class _NoLog(list[LoggedRequest]):
    """A request log that keeps only the count."""

    count = 0

    def append(self, item: LoggedRequest) -> None:
        self.count += 1

    def __len__(self) -> int:
        return self.count


if __name__ == "__main__":
    main()
