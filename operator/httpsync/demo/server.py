"""The demo API of ``examples/port-overview/``: the scenario of Port's generic HTTP overview.

    httpsync demo-api [--port 18080]          # standalone
    httpsync sync --demo-api -f examples/port-overview/   # in-process, for one sync

Endpoints (bearer token ``demo-token``; ``page`` (from 1) and ``size`` (default 25) everywhere):

- ``GET /api/v1/users?active=true&department=engineering`` -> ``{"users": [...], "page", "size", "total", "has_more"}``
- ``GET /api/v1/projects?status=active`` -> ``{"data": {"projects": [...]}, "page", "size", "total"}``
- ``GET /api/tickets`` -> a JSON array of tickets
- ``GET /api/tickets/{ticket_id}/comments`` -> a JSON array of that ticket's comments (404 if no such ticket)
- ``GET /healthz`` (no auth)

The data is fixed (no randomness): 250 users, 40 projects, 30 tickets and their comments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from httpsync.demo import DEFAULT_PORT

TOKEN = "demo-token"
DEFAULT_SIZE = 25
MAX_SIZE = 500

_FIRST = ["Ada", "Brian", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena"]
_LAST = ["Lovelace", "Kernighan", "Wu", "Scully", "Nilsson", "Rahman", "Petrovic", "Sato", "Ivanov", "Costa", "Mensah"]
_DEPARTMENTS = ["engineering", "engineering", "product", "sales", "support"]
_EPOCH = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)


def _date(days: float) -> str:
    return (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_users() -> list[dict[str, Any]]:
    users = []
    for i in range(1, 251):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7) % len(_LAST)]
        users.append(
            {
                "id": i,
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{i}@example.com",
                "department": _DEPARTMENTS[i % len(_DEPARTMENTS)],
                "is_active": i % 8 != 0,
                "created_at": _date(i * 1.5),
                "title": "Engineering Manager" if i % 25 == 0 else "Member of staff",
            }
        )
    return users


def make_projects() -> list[dict[str, Any]]:
    return [
        {
            "project_id": f"prj-{i:03d}",
            "project_name": f"Project {chr(64 + (i % 26 or 26))}{i}",
            "description": f"Demo project number {i}",
            "owner": {"email": USERS[(i * 5) % len(USERS)]["email"], "name": USERS[(i * 5) % len(USERS)]["name"]},
            "budget_amount": round(10000 + i * 1234.5, 2),
            "created_date": _date(i * 9),
            "status": "archived" if i % 4 == 0 else "active",
        }
        for i in range(1, 41)
    ]


def make_tickets() -> list[dict[str, Any]]:
    statuses = ["open", "in_progress", "closed"]
    return [
        {
            "id": t,
            "title": f"Ticket {t}: {['Fix login', 'Update docs', 'Speed up search', 'Add export'][t % 4]}",
            "status": statuses[t % 3],
            "priority": ["low", "medium", "high"][(t // 3) % 3],
            "assignee": USERS[t % len(USERS)]["email"],
            "created_at": _date(t - 90),
        }
        for t in range(101, 131)
    ]


def comments_of(ticket_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": ticket_id * 100 + k,
            "ticket_id": ticket_id,
            "author": USERS[(ticket_id + k) % len(USERS)]["email"],
            "body": f"Comment {k} on ticket {ticket_id}",
            "created_at": _date(ticket_id - 80 + k),
        }
        for k in range(1, ticket_id % 4 + 1)
    ]


USERS = make_users()
PROJECTS = make_projects()
TICKETS = make_tickets()
TICKET_IDS = {t["id"] for t in TICKETS}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != "/healthz" and request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.json_response({"error": "missing or invalid bearer token"}, status=401)
    return await handler(request)


def _page(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    try:
        page = max(1, int(request.query.get("page", "1")))
        size = min(MAX_SIZE, max(1, int(request.query.get("size", str(DEFAULT_SIZE)))))
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "page and size must be integers"}', content_type="application/json"
        ) from None
    start = (page - 1) * size
    chunk = items[start : start + size]
    return chunk, {"page": page, "size": size, "total": len(items), "has_more": start + size < len(items)}


async def users(request: web.Request) -> web.Response:
    selected = USERS
    if "active" in request.query:
        want = request.query["active"].lower() == "true"
        selected = [u for u in selected if u["is_active"] == want]
    if "department" in request.query:
        selected = [u for u in selected if u["department"] == request.query["department"]]
    chunk, meta = _page(request, selected)
    return web.json_response({"users": chunk, **meta})


async def projects(request: web.Request) -> web.Response:
    selected = PROJECTS
    if "status" in request.query:
        selected = [p for p in selected if p["status"] == request.query["status"]]
    chunk, meta = _page(request, selected)
    meta.pop("has_more")
    return web.json_response({"data": {"projects": chunk}, **meta})


async def tickets(request: web.Request) -> web.Response:
    chunk, _ = _page(request, TICKETS)
    return web.json_response(chunk)


async def ticket_comments(request: web.Request) -> web.Response:
    try:
        ticket_id = int(request.match_info["ticket_id"])
    except ValueError:
        ticket_id = -1
    if ticket_id not in TICKET_IDS:
        return web.json_response({"error": "no such ticket"}, status=404)
    chunk, _ = _page(request, comments_of(ticket_id))
    return web.json_response(chunk)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app() -> web.Application:
    app = web.Application(middlewares=[_bearer_auth])
    app.router.add_get("/api/v1/users", users)
    app.router.add_get("/api/v1/projects", projects)
    app.router.add_get("/api/tickets", tickets)
    app.router.add_get("/api/tickets/{ticket_id}/comments", ticket_comments)
    app.router.add_get("/healthz", healthz)
    return app


class DemoApi:
    """The demo API served from the running event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises OSError when the port is taken."""
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DemoApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until cancelled."""
    async with DemoApi(host, port) as api:
        if ready is not None:
            ready(api.url)
        await asyncio.Event().wait()


def main() -> None:  # python -m httpsync.demo.server
    ap = argparse.ArgumentParser(description="The httpsync demo API")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = ap.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, ready=lambda url: print(f"demo API on {url}", flush=True)))


if __name__ == "__main__":
    main()
