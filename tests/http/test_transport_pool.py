"""The operator's shared connections (http.transport.TransportPool): the next sync of a source reuses the
connection of the last one (no new TCP or TLS handshake per sync), sources with other TLS settings or body
limits get their own pool, and a client's close leaves the shared connections open."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from httpsync.engine.client import SourceClient
from httpsync.http.transport import TransportPool
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec


def peer_recording_app(peers: list[Any]) -> web.Application:
    async def items(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"items": [1, 2, 3]})

    app = web.Application()
    app.router.add_get("/items", items)
    return app


async def one_sync(url: str, pool: TransportPool | None, **spec: Any) -> None:
    async with await SourceClient.create(source_spec(url, **spec), StaticSecrets(), transports=pool) as client:
        body, _ = await client.get_json("GET", client.url_for("/items"))
        assert body == {"items": [1, 2, 3]}


async def test_the_next_sync_reuses_the_connection_of_the_last_one() -> None:
    peers: list[Any] = []
    async with LoopbackServer(peer_recording_app(peers)) as server:
        pool = TransportPool()
        try:
            for _ in range(3):
                await one_sync(server.url, pool)
            assert len(peers) == 3 and len(set(peers)) == 1, peers
            # Another body limit: a pool of its own, so its own connection.
            await one_sync(server.url, pool, maxResponseBytes=1024 * 1024)
            assert len(set(peers)) == 2
        finally:
            await pool.aclose()


async def test_without_a_pool_every_sync_connects_again() -> None:
    peers: list[Any] = []
    async with LoopbackServer(peer_recording_app(peers)) as server:
        for _ in range(3):
            await one_sync(server.url, None)
    assert len(set(peers)) == 3
