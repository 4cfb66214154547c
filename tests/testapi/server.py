"""A real HTTP API for the engine's tests: every auth and pagination style, nested endpoints, faults.

Runs on 127.0.0.1 (a random free port) inside the tests (:class:`TestApi`, fixtures in
``tests.testapi.fixtures``) or standalone::

    python -m tests.testapi.server --port 8099

Data is generated deterministically from :data:`SEED`, so tests compute expected counts from
:data:`USERS`, :data:`TICKETS`, :func:`comments_of`, :data:`ORGS`, :func:`repos_of`, :func:`issues_of`.
Every request is logged (method, path, raw path, query, headers, body, arrival and end time,
status) in ``state.log``; ``state.max_in_flight`` is the highest number of requests handled at
once, ``state.cancelled`` counts requests whose client went away before the answer. Every
response waits ``state.latency`` seconds first (an asynchronous sleep), as from a distant API.

Endpoints (all JSON unless said otherwise):

auth (each returns a top-level array of 5 users)
  GET  /auth/bearer/users         Authorization: Bearer BEARER_TOKEN
  GET  /auth/apikey/users         X-API-Key: API_KEY (or header named by ?header=)
  GET  /auth/apikey-query/users   ?api_key=API_KEY
  GET  /auth/basic/users          basic BASIC_USER / BASIC_PASSWORD
  GET  /auth/oauth/users          Bearer token from /oauth/token, unexpired and not revoked
  POST /oauth/token               client credentials (form or basic); expires_in = state.token_ttl
  POST /oauth/token-fail          400 echoing the client secret (redaction test)
  POST /_control/revoke           revoke every issued token (also state.revoke_tokens())
pagination over USERS
  /api/offset/users            ?offset&limit -> {data, total}
  /api/offset-capped/users     same, the server caps limit at CAP (40)
  /api/offset-array/users      ?offset&limit -> top-level array, no total
  /api/page/users              ?page&size (1-based) -> {items, page, last}
  /api/cursor/users            ?cursor&limit -> {data, meta: {after_cursor, has_more}}; capped at CAP
  /api/cursor-noflag/users     ?cursor&limit -> {data, next_cursor} (null at the end)
  /api/odata/users             ?$top (&$skiptoken) -> {value, @odata.nextLink (absolute, own params)}
  /api/next-relative/users     ?per -> {results, next}; next is relative (path, then segment, then query)
  /api/link/users              ?page&per_page -> array + Link header (several links, quoted params)
  /api/many/items              ?page&size (1-based) or ?offset&limit over state.many (MANY items by
                               default) -> {items, total, last_page}; ?total=0 leaves the total out;
                               state.page_faults[page number] = [(status, headers), ...] answers
                               the next requests of that page with these errors, one each;
                               state.short_pages[page number] = n cuts that page to n items;
                               state.page_delay[page number] = seconds delays that page
nested
  /api/tickets                     offset -> {data, total}; ticket ids and slugs ("a/b c?" style)
  /api/tickets/{id}/comments       offset -> {data, total}; delay state.child_delay
  /api/orgs, /api/orgs/{org}/repos, /api/orgs/{org}/repos/{repo}/issues   offset -> {data, total}
  /api/flags, /api/flags/{on}/{n}/items     booleans and numbers as path values
faults
  /fault/flaky/{key}?fail=N&status=503    first N requests of that key fail, then [1,2,3] (any method)
  /fault/ratelimit/{key}?mode=seconds|date|reset-epoch|reset-delta&wait=S   first request 429
  /fault/slow?delay=S        /fault/malformed      /fault/html       /fault/status/{code}
  /fault/repeat-cursor       /fault/identical      /fault/repeat-link    /fault/endless
  /fault/mid500              offset users, a 500 from offset MID500 on
  /fault/object              {data: {...}, meta: {}} (an object where an array is expected)
  /fault/echo-auth           400 echoing the credentials it got
  /fault/redirect-away       302 to another host
  /api/echo                  [{method, path, query, headers, body}]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from aiohttp import web

from tests.loopback import LoopbackServer

SEED = 20240607
CAP = 40
MID500 = 100
MANY = 100

BEARER_TOKEN = "bearer-tok-8f3a9c2e71"
API_KEY = "apikey-5d1e77b0c4"
BASIC_USER = "alice-basic"
BASIC_PASSWORD = "pw-b1c9e0f4a2"
CLIENT_ID = "client-id-42"
CLIENT_SECRET = "client-secret-9a7d3e"


# --------------------------------------------------------------------------- deterministic data


def _users(n: int = 237) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    return [
        {
            "id": i,
            "name": f"user-{i:03d}",
            "email": f"user{i}@example.test",
            "active": rng.random() < 0.8,
            "score": rng.randint(0, 1000),
        }
        for i in range(1, n + 1)
    ]


USERS = _users()
TICKETS: list[dict[str, Any]] = [
    {"id": i, "slug": f"t{i}/a b?&#" if i % 5 == 0 else f"t{i}", "open": i % 3 != 0} for i in range(1, 26)
]
ORGS: list[dict[str, Any]] = [{"login": "acme"}, {"login": "big corp"}, {"login": "c/d"}]
FLAGS: list[dict[str, Any]] = [{"on": True, "n": 2.0}, {"on": False, "n": 3.5}]


def many_items(n: int = MANY) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item-{i}", "group": i % 3} for i in range(1, n + 1)]


def comments_of(ticket_id: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED * 1000 + ticket_id)
    return [{"id": f"{ticket_id}-{j}", "text": f"comment {j}"} for j in range(rng.randint(0, 7))]


def repos_of(org: str) -> list[dict[str, Any]]:
    return [{"name": name, "org": org} for name in ("r1", "r#2", "r 3")]


def issues_of(org: str, repo: str) -> list[dict[str, Any]]:
    n = (sum(map(ord, org + repo)) % 4) + 1
    return [{"number": k, "title": f"{org}/{repo} #{k}"} for k in range(1, n + 1)]


# --------------------------------------------------------------------------- state and log


@dataclass
class LoggedRequest:
    method: str
    path: str  # decoded
    raw_path: str  # as sent (percent-encoded), query included
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: str
    time: float  # time.monotonic() at arrival
    status: int | None = None  # None: still in flight, or cancelled (the client went away)
    done: float | None = None  # time.monotonic() when the handler ended


@dataclass
class ApiState:
    log: list[LoggedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    counters: dict[str, int] = field(default_factory=dict)  # per fault key
    token_ttl: float = 3600.0
    token_delay: float = 0.0
    token_requests: int = 0
    token_forms: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    child_delay: float = 0.0
    latency: float = 0.0  # seconds before every response
    cancelled: int = 0  # requests whose client went away before the answer
    many: list[dict[str, Any]] = field(default_factory=many_items)  # /api/many/items
    page_faults: dict[int, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    short_pages: dict[int, int] = field(default_factory=dict)
    page_delay: dict[int, float] = field(default_factory=dict)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def count(self, key: str) -> int:
        """Increment and return the number of requests seen for ``key``."""
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    def requests_to(self, path_prefix: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path.startswith(path_prefix)]


STATE = web.AppKey("state", ApiState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> ApiState:
    return request.app[STATE]


@web.middleware
async def _track(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = _state(request)
    body = await request.text() if request.can_read_body else ""
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
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        if state.latency:
            await asyncio.sleep(state.latency)
        response = await handler(request)
        entry.status = response.status
        return response
    except web.HTTPException as e:
        entry.status = e.status
        raise
    except asyncio.CancelledError:
        state.cancelled += 1
        raise
    finally:
        entry.done = time.monotonic()
        state.in_flight -= 1


# --------------------------------------------------------------------------- helpers


def _int(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _offset_page(request: web.Request, items: list[Any], cap: int | None = None) -> tuple[list[Any], int]:
    offset = _int(request, "offset", 0)
    limit = _int(request, "limit", 20)
    if cap is not None:
        limit = min(limit, cap)
    return items[offset : offset + limit], offset


def _unauthorized(message: str = "unauthorized") -> web.Response:
    return _json({"error": message}, status=401, headers={"WWW-Authenticate": "Bearer"})


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


# --------------------------------------------------------------------------- auth


async def auth_users(request: web.Request) -> web.Response:
    style = request.match_info["style"]
    state = _state(request)
    ok = False
    if style == "bearer":
        ok = request.headers.get("Authorization") == f"Bearer {BEARER_TOKEN}"
    elif style == "apikey":
        ok = request.headers.get(request.query.get("header", "X-API-Key")) == API_KEY
    elif style == "apikey-query":
        ok = request.query.get("api_key") == API_KEY
    elif style == "basic":
        expected = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
        ok = request.headers.get("Authorization") == f"Basic {expected}"
    elif style == "oauth":
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        ok = auth.startswith("Bearer ") and state.tokens.get(token, 0) > time.monotonic()
    if not ok:
        return _unauthorized()
    return _json(USERS[:5])


async def oauth_token(request: web.Request) -> web.Response:
    state = _state(request)
    state.token_requests += 1
    form = dict(parse_qsl(await request.text()))
    state.token_forms.append(form)
    if state.token_delay:
        await asyncio.sleep(state.token_delay)
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
    if form.get("grant_type") != "client_credentials":
        return _json({"error": "unsupported_grant_type"}, status=400)
    if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
        return _json({"error": "invalid_client"}, status=401)
    token = f"at-{state.token_requests}-{random.getrandbits(48):012x}"
    state.tokens[token] = time.monotonic() + state.token_ttl
    ttl = state.token_ttl
    return _json({"access_token": token, "token_type": "bearer", "expires_in": int(ttl) if ttl >= 1 else ttl})


async def oauth_token_fail(request: web.Request) -> web.Response:
    form = dict(parse_qsl(await request.text()))
    return _json({"error": "invalid_request", "received": form.get("client_secret")}, status=400)


async def control_revoke(request: web.Request) -> web.Response:
    _state(request).revoke_tokens()
    return _json({"revoked": True})


# --------------------------------------------------------------------------- pagination


async def offset_users(request: web.Request) -> web.Response:
    page, _ = _offset_page(request, USERS)
    return _json({"data": page, "total": len(USERS)})


async def offset_capped_users(request: web.Request) -> web.Response:
    page, _ = _offset_page(request, USERS, cap=CAP)
    return _json({"data": page, "total": len(USERS)})


async def offset_array_users(request: web.Request) -> web.Response:
    page, _ = _offset_page(request, USERS)
    return _json(page)


async def page_users(request: web.Request) -> web.Response:
    page = _int(request, "page", 1)
    size = _int(request, "size", 20)
    start = (page - 1) * size
    items = USERS[start : start + size]
    return _json({"items": items, "page": page, "last": start + size >= len(USERS)})


def _cursor_to_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
    except ValueError:
        raise web.HTTPBadRequest(text="bad cursor") from None


def _offset_to_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


async def cursor_users(request: web.Request) -> web.Response:
    offset = _cursor_to_offset(request.query.get("cursor"))
    limit = min(_int(request, "limit", 20), CAP)
    items = USERS[offset : offset + limit]
    end = offset + len(items)
    more = end < len(USERS)
    return _json({"data": items, "meta": {"after_cursor": _offset_to_cursor(end) if more else None, "has_more": more}})


async def cursor_noflag_users(request: web.Request) -> web.Response:
    offset = _cursor_to_offset(request.query.get("cursor"))
    limit = _int(request, "limit", 20)
    items = USERS[offset : offset + limit]
    end = offset + len(items)
    return _json({"data": items, "next_cursor": _offset_to_cursor(end) if end < len(USERS) else None})


async def odata_users(request: web.Request) -> web.Response:
    top = _int(request, "$top", 20)
    skip = _cursor_to_offset(request.query.get("$skiptoken"))
    items = USERS[skip : skip + top]
    body: dict[str, Any] = {"value": items}
    if skip + top < len(USERS):
        qs = urlencode({"$top": top, "$skiptoken": _offset_to_cursor(skip + top), "api-version": "7.1"})
        body["@odata.nextLink"] = f"{_base(request)}/api/odata/users?{qs}"
    return _json(body)


async def next_relative_users(request: web.Request) -> web.Response:
    per = _int(request, "per", 20)
    page = _int(request, "page", 1)
    items = USERS[(page - 1) * per : page * per]
    nxt = None
    if page * per < len(USERS):
        qs = f"page={page + 1}&per={per}&sig=s{page + 1}"
        forms = (f"/api/next-relative/users?{qs}", f"users?{qs}", f"?{qs}")
        nxt = forms[(page - 1) % 3]
    return _json({"results": items, "next": nxt})


async def link_users(request: web.Request) -> web.Response:
    per = _int(request, "per_page", 20)
    page = _int(request, "page", 1)
    items = USERS[(page - 1) * per : page * per]
    last = max(1, -(-len(USERS) // per))
    base = f"{_base(request)}/api/link/users"
    links = [f'<{base}?page=1&per_page={per}>; rel="first"; title="first, page; one"']
    if page < last:
        links.append(f'<{base}?page={page + 1}&per_page={per}>; rel="next"; title="next, page"')
    headers = {"Link": ", ".join(links), "X-Note": "links"}
    resp = _json(items, headers=headers)
    resp.headers.add("Link", f'<{base}?page={last}&per_page={per}>; rel="last"')
    return resp


async def many(request: web.Request) -> web.Response:
    state = _state(request)
    if "page" in request.query:
        size = _int(request, "size", 10)
        number = _int(request, "page", 1)
        start = (number - 1) * size
    else:
        size = _int(request, "limit", 10)
        start = _int(request, "offset", 0)
        number = start // size + 1 if size > 0 else 1
    if number in state.page_delay:
        await asyncio.sleep(state.page_delay[number])
    faults = state.page_faults.get(number)
    if faults:
        status, headers = faults.pop(0)
        return _json({"error": f"page {number} failed"}, status=status, headers=headers)
    body: dict[str, Any] = {"items": state.many[start : start + min(size, state.short_pages.get(number, size))]}
    if request.query.get("total") != "0":
        body["total"] = len(state.many)
    body["last_page"] = max(1, -(-len(state.many) // size)) if size > 0 else 1
    return _json(body)


# --------------------------------------------------------------------------- nested


async def tickets(request: web.Request) -> web.Response:
    page, _ = _offset_page(request, TICKETS)
    return _json({"data": page, "total": len(TICKETS)})


async def ticket_comments(request: web.Request) -> web.Response:
    state = _state(request)
    if state.child_delay:
        await asyncio.sleep(state.child_delay)
    raw = request.match_info["id"]  # an id, or a slug (decoded: "t5/a b?&#" arrives as t5%2Fa%20b%3F%26%23)
    by_slug = {t["slug"]: t["id"] for t in TICKETS}
    ticket_id = int(raw) if raw.isdigit() else by_slug.get(raw, 0)
    if not any(t["id"] == ticket_id for t in TICKETS):
        return _json({"error": f"no ticket {raw!r}"}, status=404)
    page, _ = _offset_page(request, comments_of(ticket_id))
    return _json({"data": page, "total": len(comments_of(ticket_id))})


async def orgs_tree(request: web.Request) -> web.Response:
    """/api/orgs[/{org}/repos[/{repo}/issues]], parsed from the raw path so %2F stays in a segment."""
    raw = request.raw_path.split("?", 1)[0]
    parts = [unquote(p) for p in raw.removeprefix("/api/orgs").strip("/").split("/") if p]
    known = {o["login"] for o in ORGS}
    if not parts:
        items = ORGS
    elif len(parts) == 2 and parts[1] == "repos" and parts[0] in known:
        items = repos_of(parts[0])
    elif len(parts) == 4 and parts[1] == "repos" and parts[3] == "issues" and parts[0] in known:
        if parts[2] not in {r["name"] for r in repos_of(parts[0])}:
            return _json({"error": "no such repo", "parts": parts}, status=404)
        items = issues_of(parts[0], parts[2])
    else:
        return _json({"error": "not found", "parts": parts}, status=404)
    page, _ = _offset_page(request, items)
    return _json({"data": page, "total": len(items)})


async def flags(request: web.Request) -> web.Response:
    return _json(FLAGS)


async def flag_items(request: web.Request) -> web.Response:
    return _json([{"on": request.match_info["on"], "n": request.match_info["n"]}])


# --------------------------------------------------------------------------- faults


async def flaky(request: web.Request) -> web.Response:
    state = _state(request)
    n = state.count(f"flaky:{request.match_info['key']}")
    if n <= _int(request, "fail", 3):
        status = _int(request, "status", 503)
        return web.Response(status=status, text=f"temporarily broken (attempt {n})")
    return _json([{"id": 1}, {"id": 2}, {"id": 3}])


async def ratelimit(request: web.Request) -> web.Response:
    state = _state(request)
    n = state.count(f"ratelimit:{request.match_info['key']}")
    if n > 1:
        return _json([{"id": 1}])
    wait = _int(request, "wait", 1)
    mode = request.query.get("mode", "seconds")
    headers = {
        "seconds": {"Retry-After": str(wait)},
        "date": {"Retry-After": formatdate(time.time() + wait, usegmt=True)},
        "reset-epoch": {"X-RateLimit-Reset": str(int(time.time()) + wait)},
        "reset-delta": {"X-RateLimit-Reset": str(wait)},
        "none": {},
    }[mode]
    return _json({"error": "slow down"}, status=429, headers=headers)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return _json([])


async def malformed(request: web.Request) -> web.Response:
    return web.Response(text='{"data": [1, 2,', content_type="application/json")


async def html(request: web.Request) -> web.Response:
    page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Please sign in</h1></body></html>"
    return web.Response(text=page, content_type="text/html")


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code} body")


async def repeat_cursor(request: web.Request) -> web.Response:
    # Cursors: (none) -> A -> B -> A ...
    cursor = request.query.get("cursor", "")
    nxt = {"": "A", "A": "B", "B": "A"}.get(cursor)
    return _json({"data": [{"id": f"{cursor or 'start'}-{i}"} for i in range(3)], "meta": {"after_cursor": nxt}})


async def identical(request: web.Request) -> web.Response:
    return _json({"items": USERS[:10], "total": 1000})


async def repeat_link(request: web.Request) -> web.Response:
    p = request.query.get("p", "0")
    nxt = {"0": "/fault/repeat-link?p=1", "1": "/fault/repeat-link?p=2", "2": "/fault/repeat-link?p=1"}[p]
    return _json({"value": [{"id": f"p{p}"}], "@odata.nextLink": nxt})


async def endless(request: web.Request) -> web.Response:
    n = int(request.query.get("cursor", "0"))
    return _json({"data": [{"id": n}], "meta": {"after_cursor": str(n + 1), "has_more": True}})


async def mid500(request: web.Request) -> web.Response:
    if _int(request, "offset", 0) >= MID500:
        return web.Response(status=500, text="internal error")
    return await offset_users(request)


async def object_response(request: web.Request) -> web.Response:
    return _json({"data": {"id": 1, "name": "one"}, "meta": {"count": 1}})


async def echo_auth(request: web.Request) -> web.Response:
    got = f"{request.headers.get('Authorization', '')} {request.headers.get('X-API-Key', '')}"
    return web.Response(status=400, text=f"invalid credentials: got {got} for {request.query_string}")


async def redirect_away(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://other-host.invalid/steal")


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    return _json(
        [
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": json.loads(body) if body else None,
            }
        ]
    )


# --------------------------------------------------------------------------- app


def make_app(state: ApiState | None = None) -> web.Application:
    app = web.Application(middlewares=[_track])
    app[STATE] = state or ApiState()
    r = app.router
    r.add_get("/auth/{style}/users", auth_users)
    r.add_post("/oauth/token", oauth_token)
    r.add_post("/oauth/token-fail", oauth_token_fail)
    r.add_post("/_control/revoke", control_revoke)
    r.add_get("/api/offset/users", offset_users)
    r.add_get("/api/offset-capped/users", offset_capped_users)
    r.add_get("/api/offset-array/users", offset_array_users)
    r.add_get("/api/page/users", page_users)
    r.add_get("/api/cursor/users", cursor_users)
    r.add_get("/api/cursor-noflag/users", cursor_noflag_users)
    r.add_get("/api/odata/users", odata_users)
    r.add_get("/api/next-relative/users", next_relative_users)
    r.add_get("/api/link/users", link_users)
    r.add_get("/api/many/items", many)
    r.add_get("/api/tickets", tickets)
    r.add_get("/api/tickets/{id}/comments", ticket_comments)
    r.add_get("/api/orgs", orgs_tree)
    r.add_get("/api/orgs/{tail:.*}", orgs_tree)
    r.add_get("/api/flags", flags)
    r.add_get("/api/flags/{on}/{n}/items", flag_items)
    r.add_route("*", "/fault/flaky/{key}", flaky)
    r.add_get("/fault/ratelimit/{key}", ratelimit)
    r.add_get("/fault/slow", slow)
    r.add_get("/fault/malformed", malformed)
    r.add_get("/fault/html", html)
    r.add_route("*", "/fault/status/{code}", status)
    r.add_get("/fault/repeat-cursor", repeat_cursor)
    r.add_get("/fault/identical", identical)
    r.add_get("/fault/repeat-link", repeat_link)
    r.add_get("/fault/endless", endless)
    r.add_get("/fault/mid500", mid500)
    r.add_get("/fault/object", object_response)
    r.add_get("/fault/echo-auth", echo_auth)
    r.add_get("/fault/redirect-away", redirect_away)
    r.add_route("*", "/api/echo", echo)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestApi(LoopbackServer):
    """The API running in the test's event loop on 127.0.0.1 and a free port."""

    __test__ = False  # not a pytest test class

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.state = ApiState()
        super().__init__(make_app(self.state), ssl_context)

    @property
    def log(self) -> list[LoggedRequest]:
        return self.state.log

    def requests_to(self, path_prefix: str) -> list[LoggedRequest]:
        return self.state.requests_to(path_prefix)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="httpsync's test API (see the module docstring for endpoints)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    print(f"test API on http://{args.host}:{args.port} (bearer {BEARER_TOKEN!r}, api key {API_KEY!r})")
    web.run_app(make_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
