"""spec.maxResponseBytes: a body larger than the limit (on the wire, or once inflated) fails with
ResponseTooLarge while it streams in, never inflating a gzip bomb whole."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiohttp import web

from httpsync.engine.client import SourceClient
from httpsync.errors import ResponseTooLargeError
from tests.bombs import gzip_bomb
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

MIB = 1024 * 1024
LIMIT = 1 * MIB
ITEMS = {"items": [{"id": i, "name": f"item {i}"} for i in range(200)]}
ITEMS_BYTES = json.dumps(ITEMS).encode()


def _routes() -> dict[str, tuple[bytes, dict[str, str]]]:
    return {
        "/bomb": (gzip_bomb(64), {"Content-Encoding": "gzip"}),  # 64 KB inflating to 64 MiB
        "/big": (b'{"items": [], "pad": "' + b"x" * (3 * MIB) + b'"}', {}),
        "/gzip": (gzip.compress(ITEMS_BYTES), {"Content-Encoding": "gzip"}),
        "/deflate": (zlib.compress(ITEMS_BYTES), {"Content-Encoding": "deflate"}),
        "/raw-deflate": (zlib.compress(ITEMS_BYTES, wbits=-15), {"Content-Encoding": "deflate"}),
        "/plain": (ITEMS_BYTES, {}),
    }


@pytest.fixture(scope="module")
def routes() -> dict[str, tuple[bytes, dict[str, str]]]:
    return _routes()


@pytest.fixture
async def api(routes: dict[str, tuple[bytes, dict[str, str]]]) -> AsyncIterator[LoopbackServer]:
    async def handle(request: web.Request) -> web.Response:
        body, headers = routes[request.path]
        return web.Response(body=body, headers={"Content-Type": "application/json", **headers})

    app = web.Application()
    app.router.add_get("/{name}", handle)
    async with LoopbackServer(app) as server:
        yield server


async def _get(url: str, path: str, **fields: Any) -> Any:
    spec = source_spec(url, retry={"maxRetries": 0}, **fields)
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        body, _ = await client.get_json("GET", client.url_for(path))
    return body


@pytest.mark.parametrize("path", ["/bomb", "/big"])
async def test_a_body_over_the_limit_is_response_too_large(api: LoopbackServer, path: str) -> None:
    with pytest.raises(ResponseTooLargeError) as info:
        await _get(api.url, path, maxResponseBytes=LIMIT)
    e = info.value
    assert (e.reason, e.stalled) == ("ResponseTooLarge", True)
    assert e.message.startswith(f"GET {api.url}{path}: the response body is larger than spec.maxResponseBytes")
    assert f"({LIMIT} bytes, counted after decompression)" in e.message


@pytest.mark.parametrize("path", ["/plain", "/gzip", "/deflate", "/raw-deflate"])
async def test_bodies_under_the_limit_decode_as_before(api: LoopbackServer, path: str) -> None:
    assert await _get(api.url, path, maxResponseBytes=LIMIT) == ITEMS


async def test_the_default_limit_is_64_mib(api: LoopbackServer) -> None:
    assert source_spec(api.url).max_response_bytes == 64 * MIB
    with pytest.raises(ResponseTooLargeError):
        await _get(api.url, "/bomb")  # 64 MiB of padding plus the JSON around it


async def test_the_httpx_transport_checks_the_limit_too(api: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPSYNC_HTTP_TRANSPORT", "httpx")
    with pytest.raises(ResponseTooLargeError):
        await _get(api.url, "/big", maxResponseBytes=LIMIT)
    assert await _get(api.url, "/gzip", maxResponseBytes=LIMIT) == ITEMS


# --------------------------------------------------------------------------- memory stays bounded


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[str]:
    """A 1 MB gzip body that inflates to 1 GiB, served from a thread (the client runs in a child)."""
    body = gzip_bomb(1024)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from httpsync.engine.client import SourceClient
    from httpsync.errors import ResponseTooLargeError
    from tests.testapi.fixtures import StaticSecrets, source_spec

    async def main() -> None:
        spec = source_spec(sys.argv[1], retry={"maxRetries": 0})
        async with await SourceClient.create(spec, StaticSecrets()) as client:
            try:
                await client.get_json("GET", client.url_for("/bomb"))
            except ResponseTooLargeError as e:
                print(e.reason)

    asyncio.run(main())
    """
)


def _peak_rss_mib(bomb_server: str, env: dict[str, str]) -> tuple[str, float]:
    """Run the child; its output and peak RSS (its own, from wait4)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, bomb_server], stdout=out, stderr=subprocess.STDOUT, cwd=root,
            env={**os.environ, **env},
        )  # fmt: skip
        timer = threading.Timer(120, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    assert proc.returncode == 0, text
    return text.strip(), usage.ru_maxrss / 1024


def test_a_gzip_bomb_is_never_inflated_whole(bomb_server: str) -> None:
    """1 GiB inflated would need over 1 GiB of memory; the child stays far below it."""
    out, peak_mib = _peak_rss_mib(bomb_server, {})
    assert out == "ResponseTooLarge"
    assert peak_mib < 400, f"peak RSS {peak_mib:.0f} MiB"
