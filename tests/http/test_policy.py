"""The destination policy has no holes: every spelling of a denied address is denied, the DNS
answers are checked (off the event loop), the addresses connected to are checked, and the sinks'
URLs and OAuth tokenUrls go through the same policy."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from httpsync.api.models import SinkSpec
from httpsync.engine.client import SourceClient
from httpsync.errors import DestinationDeniedError, EngineError
from httpsync.http.policy import DestinationPolicy, parse_address
from httpsync.http.transport import AiohttpTransport
from httpsync.sinks.factory import Sinks, SinkSettings, build_sink
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

METADATA_SPELLINGS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::169.254.169.254]/",  # IPv4-compatible
    "http://[64:ff9b::169.254.169.254]/",  # NAT64
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a9fe:a9fe]/",  # local-use NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://2852039166/",  # decimal
    "http://0xa9fea9fe/",  # hex
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://0251.0376.0251.0376/",  # octal
    "http://169.254.43518/",  # a.b.c with c filling two bytes
    "http://169.254.169.254./",  # trailing dot
    "http://[fd00:ec2::254]/",
    "http://[::ffff:100.100.100.200]/",
]


@pytest.mark.parametrize("url", METADATA_SPELLINGS)
def test_every_spelling_of_a_metadata_address_is_denied(url: str) -> None:
    with pytest.raises(DestinationDeniedError, match="denied by the operator's destination policy"):
        DestinationPolicy(resolve=False).check(url)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),  # not octal, not decimal: a name
    ],
)
def test_addresses_are_read_as_resolvers_read_them(host: str, address: str | None) -> None:
    parsed = parse_address(host)
    assert (str(parsed) if parsed is not None else None) == address


def test_ordinary_addresses_and_loopback_pass_the_default_policy() -> None:
    p = DestinationPolicy(resolve=False)
    for url in ("http://127.0.0.1:8080/", "http://[::1]/", "https://api.example.com/", "http://[::ffff:10.1.2.3]/"):
        p.check(url)


def test_allow_lists_match_every_spelling_too() -> None:
    p = DestinationPolicy(allow=["10.0.0.0/8"], resolve=False)
    p.check("http://[::ffff:10.1.2.3]/")
    p.check("http://167772161/")  # 10.0.0.1
    with pytest.raises(DestinationDeniedError, match="not in the operator's destination allow list"):
        p.check("http://[::ffff:11.1.2.3]/")
    # An IPv4-mapped deny entry covers the plain IPv4 form, and the other way round.
    q = DestinationPolicy(deny=["::ffff:10.0.0.0/104"], resolve=False)
    with pytest.raises(DestinationDeniedError):
        q.check("http://10.9.9.9/")


class _FakeDnsLoop(asyncio.SelectorEventLoop):
    """A loop whose resolver answers ``alias.test`` with the metadata address (a DNS name
    pointing at it), everything else as the system does."""

    async def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "alias.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 0))]
        return await super().getaddrinfo(host, *args, **kwargs)


def test_the_dns_answers_are_checked_through_the_event_loop_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def blocking(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("socket.getaddrinfo called on the event loop")

    p = DestinationPolicy()
    p.check("http://alias.test/")  # the URL alone says nothing: no DNS on the sync path

    async def main() -> None:
        monkeypatch.setattr(socket, "getaddrinfo", blocking)
        try:
            with pytest.raises(DestinationDeniedError, match=r"alias.test .*resolves to 169.254.169.254"):
                await p.check_resolved("http://alias.test/x")
        finally:
            monkeypatch.undo()

    loop = _FakeDnsLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    with pytest.raises(DestinationDeniedError):  # known now: the sync check says it too
        p.check("http://alias.test/")


class Counting(LoopbackServer):
    def __init__(self) -> None:
        self.hits: list[str] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if request.path.endswith("/token"):
            return web.json_response({"access_token": "tok-123456", "expires_in": 3600})
        return web.json_response([{"id": 1}])


@pytest.fixture
async def server() -> Any:
    async with Counting() as s:
        yield s


async def test_the_transport_checks_the_addresses_it_connects_to(server: Counting) -> None:
    # No client hook here: the transport's resolver alone refuses to connect to a denied answer.
    policy = DestinationPolicy(deny=["127.0.0.0/8"])
    transport = AiohttpTransport(policy=policy)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(DestinationDeniedError, match=r"resolves to 127\.0\.0\.1"):
            await client.get(f"http://localhost:{server.port}/x")
        with pytest.raises(DestinationDeniedError):
            await client.get(f"http://127.1:{server.port}/x")  # IP literals never reach the resolver
    assert server.hits == []
    async with httpx.AsyncClient(transport=AiohttpTransport(policy=DestinationPolicy())) as client:
        assert (await client.get(f"http://localhost:{server.port}/ok")).status_code == 200
    assert server.hits == ["/ok"]


async def test_a_source_whose_name_resolves_to_a_denied_address_sends_nothing(server: Counting) -> None:
    policy = DestinationPolicy(deny=["127.0.0.0/8"])
    spec = source_spec(f"http://localhost:{server.port}")
    with pytest.raises(DestinationDeniedError, match="localhost"):
        await SourceClient.create(spec, StaticSecrets(), check_url=policy.check)
    assert server.hits == []


async def test_the_oauth_token_url_goes_through_the_policy(server: Counting) -> None:
    # the API is allowed; its token endpoint is the loopback address spelled as IPv4-mapped IPv6
    policy = DestinationPolicy(deny=["127.0.0.0/8"])
    policy_ok = DestinationPolicy(allow=["api.test"], deny=[], resolve=False)
    auth = {
        "type": "oauth2ClientCredentials",
        "tokenUrl": f"http://[::ffff:127.0.0.1]:{server.port}/token",
        "secretRef": {"name": "oauth"},
    }
    spec = source_spec("http://192.0.2.1:9", auth=auth, retry={"maxRetries": 0}, timeoutSeconds=2)
    with pytest.raises(DestinationDeniedError, match=r"::ffff:127.0.0.1 is denied"):
        await SourceClient.create(spec, StaticSecrets(), check_url=policy.check)
    with pytest.raises(DestinationDeniedError, match="not in the operator's destination allow list"):
        await SourceClient.create(spec, StaticSecrets(), check_url=policy_ok.check)
    assert server.hits == []


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "webhook", "webhook": {"url": "http://[::ffff:169.254.169.254]/hook"}},
        {"type": "webhook", "webhook": {"url": "http://2852039166/hook"}},
        {"type": "port", "port": {"baseUrl": "http://[64:ff9b::a9fe:a9fe]", "secretRef": {"name": "port"}}},
    ],
)
async def test_a_sources_own_sink_goes_through_the_policy(spec: dict[str, Any], tmp_path: Path) -> None:
    secrets = StaticSecrets({"port": {"clientId": "id", "clientSecret": "secret-value"}})
    with pytest.raises(DestinationDeniedError, match="denied by the operator's destination policy"):
        await build_sink(SinkSpec.model_validate(spec), secrets, source="ns/src", check_url=DestinationPolicy().check)
    # The operator's sinks apply the default deny list even when it was not given one.
    sinks = await Sinks.open(SinkSettings(catalog_path=tmp_path / "c.db", state_path=tmp_path / "s.db"))
    try:
        with pytest.raises(EngineError, match="denied by the operator's destination policy"):
            async with sinks.for_source(SinkSpec.model_validate(spec), secrets, "src"):
                pass
    finally:
        await sinks.aclose()


async def test_a_webhook_sink_on_a_name_resolving_to_a_denied_address_sends_nothing(server: Counting) -> None:
    spec = SinkSpec.model_validate({"type": "webhook", "webhook": {"url": f"http://localhost:{server.port}/hook"}})
    policy = DestinationPolicy(deny=["127.0.0.0/8"])
    with pytest.raises(DestinationDeniedError):
        await build_sink(spec, StaticSecrets({}), source="ns/src", check_url=policy.check)
    assert server.hits == []
