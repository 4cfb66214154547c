"""The loopback API of the benchmarks: a raw asyncio HTTP/1.1 server writing pre-rendered responses.

    .venv/bin/python -m bench.server [--items 1000000] [--parents 1000] [--latency 0.02] [--latency-ms 0]
                                     [--port 0]

It runs in its own process (it must not share the engine's GIL) and prints ``PORT <n>`` once every
page is rendered. Endpoints (keep-alive):

- ``GET /items?page=P&size=S``: ``{"items": [...], "page": P, "size": S, "total": N}``, the N items of
  :func:`bench.data.make_item` (page pagination from 1, with a total); pages of
  :data:`bench.data.PAGE_SIZE` are pre-rendered (other sizes are rendered on request).
- The same items in the other pagination styles (for the latency benchmark, :mod:`bench.latency`):
  ``GET /offset-items?offset=O&limit=L``: ``{"items": [...]}`` (no total: the end is a short page);
  ``GET /cursor-items?cursor=C&limit=L``: ``{"items": [...], "nextCursor": C'}`` (null at the end);
  ``GET /link-items?page=P&size=S``: ``{"items": [...], "next": "/link-items?page=P+1&size=S"}``
  (a relative next link, null at the end).
- ``--latency-ms``: every item response above is sent that many milliseconds after its request
  arrived (an asynchronous wait: other connections are served meanwhile), as from a distant API.
- ``GET /parents?page=P&size=S``: the parents of the fan-out (ids 1..parents), same shape.
- ``GET /parents/{id}/children?page=P&size=S``: ten children of a parent, answered after
  ``--latency`` seconds (an asynchronous sleep: other requests are served meanwhile).
- ``GET /stats``: requests served, connections accepted and the CPU seconds this process used (to
  show it is not the bottleneck, and that clients keep connections alive).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.data import CHILDREN_PER_PARENT, PAGE_SIZE, child_id, item_json

Response = bytes


def response(body: bytes, status: str = "200 OK") -> Response:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _page_body(items: list[str], page: int, size: int, total: int) -> bytes:
    return f'{{"items":[{",".join(items)}],"page":{page},"size":{size},"total":{total}}}'.encode()


class Data:
    """Every response the benchmarks ask for, rendered before the server says it is ready."""

    def __init__(self, items: int, parents: int, latency: float, item_latency: float = 0.0) -> None:
        self.items = items
        self.parents = parents
        self.latency = latency
        self.item_latency = item_latency
        self.requests = 0
        self.connections = 0
        npages = -(-items // PAGE_SIZE)
        self.item_pages = [self._items(p, PAGE_SIZE) for p in range(1, npages + 1)]
        ppages = -(-parents // PAGE_SIZE)
        self.parent_pages = [self._parents(p, PAGE_SIZE) for p in range(1, ppages + 1)]
        self.children = [self._children(p, 1, PAGE_SIZE) for p in range(1, parents + 1)]
        self.not_found = response(b'{"error":"not found"}', "404 Not Found")

    def _items(self, page: int, size: int) -> Response:
        ids = range((page - 1) * size, min(page * size, self.items)) if page >= 1 else range(0)
        return response(_page_body([item_json(i) for i in ids], page, size, self.items))

    def _item_array(self, start: int, size: int) -> bytes:
        """The JSON array of the items ``start .. start + size - 1`` (the pre-rendered page's when aligned)."""
        if size == PAGE_SIZE and start % PAGE_SIZE == 0 and 0 <= start // PAGE_SIZE < len(self.item_pages):
            page = self.item_pages[start // PAGE_SIZE]
            begin = page.index(b'{"items":[') + len(b'{"items":')
            return page[begin : page.rindex(b'],"page":') + 1]
        ids = range(max(0, start), min(start + size, self.items))
        return f"[{','.join(item_json(i) for i in ids)}]".encode()

    def _styled(self, path: str, params: dict[str, str]) -> Response | None:
        """The responses of ``/offset-items``, ``/cursor-items`` and ``/link-items``; None for other paths."""
        try:
            if path == "/offset-items":
                offset, size = int(params.get("offset", "0")), int(params.get("limit", str(PAGE_SIZE)))
                return response(b'{"items":' + self._item_array(offset, size) + b"}")
            if path == "/cursor-items":
                offset, size = int(params.get("cursor") or "0"), int(params.get("limit", str(PAGE_SIZE)))
                end = min(offset + size, self.items)
                nxt = f'"{end}"' if end < self.items else "null"
                return response(b'{"items":' + self._item_array(offset, size) + f',"nextCursor":{nxt}}}'.encode())
            if path == "/link-items":
                page, size = int(params.get("page", "1")), int(params.get("size", str(PAGE_SIZE)))
                more = page * size < self.items
                nxt = f'"/link-items?page={page + 1}&size={size}"' if more else "null"
                array = self._item_array((page - 1) * size, size)
                return response(b'{"items":' + array + f',"next":{nxt}}}'.encode())
        except ValueError:
            return response(b'{"error":"bad offset, cursor, page or size"}', "400 Bad Request")
        return None

    def _parents(self, page: int, size: int) -> Response:
        ids = range((page - 1) * size + 1, min(page * size, self.parents) + 1) if page >= 1 else range(0)
        return response(_page_body([item_json(i) for i in ids], page, size, self.parents))

    def _children(self, parent: int, page: int, size: int) -> Response:
        n = CHILDREN_PER_PARENT
        ks = range((page - 1) * size, min(page * size, n)) if page >= 1 else range(0)
        return response(_page_body([item_json(child_id(parent, k)) for k in ks], page, size, n))

    def route(self, target: str) -> tuple[Response, float]:
        """The response to ``GET target`` and how long to wait before sending it."""
        self.requests += 1
        path, _, query = target.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path in ("/offset-items", "/cursor-items", "/link-items"):
            styled = self._styled(path, params)
            assert styled is not None
            return styled, self.item_latency
        try:
            page = int(params.get("page", "1"))
            size = int(params.get("size", str(PAGE_SIZE)))
        except ValueError:
            return response(b'{"error":"bad page or size"}', "400 Bad Request"), 0.0
        if size < 1:
            return response(b'{"error":"bad size"}', "400 Bad Request"), 0.0
        default = size == PAGE_SIZE
        if path == "/items":
            if default and 1 <= page <= len(self.item_pages):
                return self.item_pages[page - 1], self.item_latency
            return self._items(page, size), self.item_latency
        if path == "/parents":
            if default and 1 <= page <= len(self.parent_pages):
                return self.parent_pages[page - 1], 0.0
            return self._parents(page, size), 0.0
        if path.startswith("/parents/") and path.endswith("/children"):
            try:
                parent = int(path[len("/parents/") : -len("/children")])
            except ValueError:
                return self.not_found, 0.0
            if not 1 <= parent <= self.parents:
                return self.not_found, 0.0
            if default and page == 1:
                return self.children[parent - 1], self.latency
            return self._children(parent, page, size), self.latency
        if path == "/stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "requests": self.requests,
                "connections": self.connections,
                "cpuSeconds": usage.ru_utime + usage.ru_stime,
            }
            return response(json.dumps(stats).encode()), 0.0
        if path == "/healthz":
            return response(b'{"ok":true}'), 0.0
        return self.not_found, 0.0


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, one request at a time per connection (in order, as clients expect)."""

    def __init__(self, data: Data) -> None:
        self.data = data
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a delayed response is pending: later requests wait for it
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.data.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            parts = lines[0].split(" ")
            if len(parts) != 3 or parts[0] != "GET":
                self._send(response(b'{"error":"GET only"}', "405 Method Not Allowed"), True)
                return
            body, delay = self.data.route(parts[1])
            if delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(delay, self._send_later, body, close)
                return
            self._send(body, close)

    def _send(self, body: Response, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(body)
        if close:
            self.transport.close()

    def _send_later(self, body: Response, close: bool) -> None:
        self.waiting = False
        self._send(body, close)
        self._serve()


async def serve(data: Data, host: str, port: int, *, watch_stdin: bool = False) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(data), host, port, backlog=512)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:  # the parent closed our stdin (or died): stop, so no server outlives a run
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--parents", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.02, help="seconds before each child response")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="milliseconds before each item response")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watch-stdin", action="store_true", help="stop when stdin reaches its end")
    args = ap.parse_args()
    start = time.perf_counter()
    data = Data(args.items, args.parents, args.latency, args.latency_ms / 1000)
    print(f"rendered {args.items:,} items in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    asyncio.run(serve(data, args.host, args.port, watch_stdin=args.watch_stdin))


if __name__ == "__main__":
    main()


class ServerProcess:
    """``with ServerProcess(items=...) as url:`` runs :mod:`bench.server` in a child process."""

    def __init__(
        self, *, items: int, parents: int = 1000, latency: float = 0.02, latency_ms: float = 0.0, timeout: float = 120
    ) -> None:
        self.args = ["--items", str(items), "--parents", str(parents), "--latency", str(latency), "--watch-stdin"]
        self.args += ["--latency-ms", str(latency_ms)]
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.render_seconds = 0.0

    def __enter__(self) -> str:
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,  # where ``bench`` is importable
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"bench.server did not start (said {line!r})")
        self.render_seconds = time.perf_counter() - start
        return f"http://127.0.0.1:{int(line.split()[1])}"

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
