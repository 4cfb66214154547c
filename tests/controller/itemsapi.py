"""A small, controllable HTTP API for the operator tests: a real server on 127.0.0.1 in a thread
(the operator under test runs in another process and calls it over loopback).

``GET /items?page=N&size=M`` returns ``{"data": [...], "total": T}`` from ``api.items``;
``api.fail_status`` makes every request fail with that status; ``api.token`` (when set) is the
bearer token it requires; ``api.requests`` counts requests per path.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class ItemsApi:
    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.fail_status: int | None = None
        self.token: str | None = None
        self.delay = 0.0  # seconds before each answer (a slow API)
        self.retry_after: str | None = None  # sent with every failing answer (fail_status)
        self.requests: Counter[str] = Counter()
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                with api._lock:
                    api.requests[url.path] += 1
                    api.auth_headers.append(self.headers.get("Authorization", ""))
                    fail, token, delay = api.fail_status, api.token, api.delay
                    items = list(api.items.get(url.path, []))
                if delay:
                    time.sleep(delay)
                if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                    return self._send(401, {"error": "bad token"})
                if fail is not None:
                    return self._send(fail, {"error": f"failing with {fail}"}, api.retry_after)
                if url.path not in api.items:
                    return self._send(404, {"error": "no such endpoint"})
                q = parse_qs(url.query)
                page, size = int(q.get("page", ["1"])[0]), int(q.get("size", ["100"])[0])
                chunk = items[(page - 1) * size : page * size]
                self._send(200, {"data": chunk, "total": len(items)})

            def _send(self, status: int, body: Any, retry_after: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> ItemsApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set_items(self, path: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self.items[path] = items

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]
