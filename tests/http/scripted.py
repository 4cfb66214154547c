"""A loopback server answering from a script, for the HTTP layer's tests: each path has a queue of
replies (then 200 ``{"ok": true}``); every request is logged with its arrival time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] | None = None


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    time: float
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


class Scripted(LoopbackServer):
    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.log: list[Logged] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)

    def script(self, path: str, *replies: Reply) -> None:
        self.replies.setdefault(path, []).extend(replies)

    def to(self, path: str) -> list[Logged]:
        return [r for r in self.log if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        entry = Logged(
            request.method,
            request.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            time.monotonic(),
        )
        self.log.append(entry)
        queue = self.replies.get(request.path)
        reply = queue.pop(0) if queue else Reply()
        entry.status = reply.status
        if callable(reply.body):
            return web.json_response(reply.body(entry), status=reply.status, headers=reply.headers)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        if isinstance(reply.body, str):
            return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)
