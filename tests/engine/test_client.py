"""SourceClient against the real loopback test API: retries, waits, timeouts, limits, errors."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpsync.engine.client import SourceClient
from httpsync.errors import (
    ConfigError,
    ConnectionFailedError,
    DestinationDeniedError,
    HttpStatusError,
    ResponseFormatError,
    TimeoutFailedError,
)
from httpsync.http.limits import TokenBucket
from httpsync.http.responses import retry_after_seconds
from tests.testapi.fixtures import StaticSecrets, source_spec
from tests.testapi.server import TestApi, free_port


async def make_client(base_url: str, secrets: StaticSecrets | None = None, **fields: Any) -> SourceClient:
    return await SourceClient.create(source_spec(base_url, **fields), secrets or StaticSecrets())


def gaps(api: TestApi, path: str) -> list[float]:
    times = [r.time for r in api.requests_to(path)]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_a_5xx_burst_is_retried_until_it_recovers(testapi: TestApi) -> None:
    statuses: list[int | None] = []
    spec = source_spec(testapi.url)
    async with await SourceClient.create(spec, StaticSecrets(), on_response=statuses.append) as client:
        body, _ = await client.get_json("GET", client.url_for("/fault/flaky/a?fail=3&status=503"))
    assert body == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert [r.status for r in testapi.requests_to("/fault/flaky/a")] == [503, 503, 503, 200]
    assert statuses == [503, 503, 503, 200]
    assert client.requests == 4


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_retryable_statuses(testapi: TestApi, status: int) -> None:
    async with await make_client(testapi.url) as client:
        await client.get_json("GET", client.url_for(f"/fault/flaky/s?fail=1&status={status}"))
    assert len(testapi.requests_to("/fault/flaky/s")) == 2


async def test_exhausted_retries_name_the_last_status(testapi: TestApi) -> None:
    async with await make_client(testapi.url, retry={"maxRetries": 2, "backoffSeconds": 0.001}) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/fault/flaky/x?fail=10&status=503"))
    message = str(info.value)
    assert message.startswith(f"GET {testapi.url}/fault/flaky/x?fail=10&status=503 returned 503 Service Unavailable")
    assert "(3 attempts)" in message and "temporarily broken (attempt 3)" in message
    assert len(testapi.requests_to("/fault/flaky/x")) == 3


async def test_post_is_retried_with_its_body(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        response = await client.request(
            "POST", client.url_for("/fault/flaky/p?fail=2"), json_body={"query": "all", "n": 1}
        )
    assert response.status_code == 200
    logged = testapi.requests_to("/fault/flaky/p")
    assert [r.method for r in logged] == ["POST"] * 3
    assert all(r.body == '{"query":"all","n":1}' for r in logged)
    assert all(r.headers["content-type"] == "application/json" for r in logged)


@pytest.mark.parametrize("mode", ["seconds", "date", "reset-epoch", "reset-delta"])
async def test_429_waits_as_the_server_asks_capped(testapi: TestApi, mode: str) -> None:
    # The server asks for 2 s; maxRetryAfterSeconds caps it at 0.3 s; the backoff alone would be ~1 ms.
    async with await make_client(testapi.url) as client:
        await client.get_json("GET", client.url_for(f"/fault/ratelimit/{mode}?mode={mode}&wait=2"))
    logged = testapi.requests_to(f"/fault/ratelimit/{mode}")
    assert [r.status for r in logged] == [429, 200]
    (gap,) = gaps(testapi, f"/fault/ratelimit/{mode}")
    assert 0.25 <= gap < 1.9


async def test_429_without_a_hint_uses_the_backoff(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        await client.get_json("GET", client.url_for("/fault/ratelimit/n?mode=none"))
    (gap,) = gaps(testapi, "/fault/ratelimit/n")
    assert gap < 0.25


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"retry-after": "7"}, now) == 7
    assert retry_after_seconds({"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"}, now) == 20
    assert retry_after_seconds({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, now) == 0  # in the past
    assert retry_after_seconds({"x-ratelimit-reset": str(int(now) + 90)}, now) == 90
    assert retry_after_seconds({"x-ratelimit-reset": "42"}, now) == 42
    assert retry_after_seconds({"x-ratelimit-reset": str(int(now + 5) * 1000)}, now) == 5  # epoch ms
    assert retry_after_seconds({"retry-after": "soon", "x-ratelimit-reset": "3"}, now) == 3
    assert retry_after_seconds({"retry-after": "-1"}, now) is None
    assert retry_after_seconds({}, now) is None


async def test_a_404_fails_fast_with_the_body_start(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/fault/status/404"))
    assert str(info.value) == f"GET {testapi.url}/fault/status/404 returned 404 Not Found: status 404 body"
    assert info.value.stalled
    assert len(testapi.requests_to("/fault/status/404")) == 1


async def test_the_timeout_is_applied_and_retried(testapi: TestApi) -> None:
    async with await make_client(testapi.url, timeoutSeconds=0.2, retry={"maxRetries": 1}) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutFailedError) as info:
            await client.request("GET", client.url_for("/fault/slow?delay=3"))
        elapsed = time.monotonic() - started
    assert elapsed < 2.5
    assert str(info.value) == f"GET {testapi.url}/fault/slow?delay=3 timed out after 0.2 s (2 attempts)"
    assert len(testapi.requests_to("/fault/slow")) == 2


async def test_malformed_json(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        with pytest.raises(ResponseFormatError) as info:
            await client.get_json("GET", client.url_for("/fault/malformed"))
    message = str(info.value)
    assert message.startswith(f"GET {testapi.url}/fault/malformed returned invalid JSON (")
    assert '(content-type application/json; charset=utf-8): {"data": [1, 2,' in message


async def test_an_html_page_is_not_json(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        with pytest.raises(ResponseFormatError) as info:
            await client.get_json("GET", client.url_for("/fault/html"))
    assert str(info.value).startswith(
        f"GET {testapi.url}/fault/html did not return JSON (content-type text/html; charset=utf-8): "
        "<!DOCTYPE html><html><head><title>Sign in</title>"
    )


async def test_source_headers_and_params_are_merged_under_the_endpoint_ones(testapi: TestApi) -> None:
    fields = {"headers": {"X-Src": "s", "X-Both": "src"}, "queryParams": {"tenant": "t1", "both": "src"}}
    async with await make_client(testapi.url, **fields) as client:
        body, _ = await client.get_json(
            "GET", client.url_for("/api/echo?own=1"), params={"both": "ep"}, headers={"X-Both": "ep"}
        )
    (echo,) = body
    assert echo["query"] == {"own": "1", "tenant": "t1", "both": "ep"}
    assert echo["headers"]["x-src"] == "s" and echo["headers"]["x-both"] == "ep"
    assert echo["headers"]["user-agent"] == "httpsync"


async def test_url_params_win_over_source_params(testapi: TestApi) -> None:
    async with await make_client(testapi.url, queryParams={"page": "1", "tenant": "t"}) as client:
        body, _ = await client.get_json("GET", client.url_for("/api/echo?page=5"))
    assert body[0]["query"] == {"page": "5", "tenant": "t"}


async def test_the_destination_policy_sees_every_request(testapi: TestApi) -> None:
    seen: list[str] = []

    def check(url: str) -> None:
        seen.append(url)
        if "/fault/status" in url:
            raise DestinationDeniedError(f"host of {url} denied")

    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets(), check_url=check) as client:
        await client.request("GET", client.url_for("/api/echo"))
        with pytest.raises(DestinationDeniedError):
            await client.request("GET", client.url_for("/fault/status/200"))
    assert seen[0] == testapi.url  # checked at creation
    assert f"{testapi.url}/api/echo" in seen
    assert testapi.requests_to("/fault/status") == []


async def test_another_host_is_refused(testapi: TestApi) -> None:
    async with await make_client(testapi.url) as client:
        with pytest.raises(DestinationDeniedError, match="not on the host of baseUrl"):
            await client.request("GET", "http://other-host.invalid/x")
        with pytest.raises(DestinationDeniedError, match="redirect"):
            await client.request("GET", client.url_for("/fault/redirect-away"))


async def test_credential_params_are_masked_in_messages(testapi: TestApi) -> None:
    async with await make_client(testapi.url, queryParams={"api_key": "qp-secret-value-1"}) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/fault/status/404"))
    assert "qp-secret-value-1" not in str(info.value)
    assert "api_key=***" in str(info.value)


async def test_connection_refused_is_retried_then_reported() -> None:
    statuses: list[int | None] = []
    spec = source_spec(f"http://127.0.0.1:{free_port()}", retry={"maxRetries": 2, "backoffSeconds": 0.001})
    async with await SourceClient.create(spec, StaticSecrets(), on_response=statuses.append) as client:
        with pytest.raises(ConnectionFailedError) as info:
            await client.request("GET", client.url_for("/x"))
    assert "(3 attempts): ConnectError" in str(info.value)
    assert statuses == [None, None, None]
    assert client.requests == 3


async def test_requests_per_second_is_respected(testapi: TestApi) -> None:
    async with await make_client(testapi.url, requestsPerSecond=20) as client:
        await asyncio.gather(*(client.request("GET", client.url_for("/api/echo")) for _ in range(8)))
    times = [r.time for r in testapi.requests_to("/api/echo")]
    assert len(times) == 8
    assert max(times) - min(times) >= 0.3  # 7 intervals of 50 ms, loosely


async def test_max_concurrent_requests_bounds_requests_in_flight(testapi: TestApi) -> None:
    async with await make_client(testapi.url, maxConcurrentRequests=3) as client:
        await asyncio.gather(*(client.request("GET", client.url_for("/fault/slow?delay=0.05")) for _ in range(12)))
    assert len(testapi.requests_to("/fault/slow")) == 12
    assert 2 <= testapi.state.max_in_flight <= 3


def test_token_bucket_schedules_without_polling() -> None:
    bucket = TokenBucket(rate=10)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[0] == 0
    assert waits == sorted(waits)
    assert waits[4] == pytest.approx(0.4, abs=0.02)
    burst = TokenBucket(rate=10, burst=3)
    assert [burst.reserve() for _ in range(3)][:1] == [0]


def test_an_invalid_ca_bundle_is_a_config_error() -> None:
    spec = source_spec("https://h", tls={"caBundle": "not a certificate"})
    with pytest.raises(ConfigError, match=r"tls.caBundle"):
        SourceClient(spec, httpx.Auth())


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command line)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


@pytest.fixture
async def tls_api(tls_files: tuple[Path, Path]) -> AsyncIterator[TestApi]:
    key, cert = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with TestApi(ssl_context=context) as api:
        yield api


async def test_an_unknown_certificate_fails_at_once_saying_what_to_set(tls_api: TestApi) -> None:
    async with await make_client(tls_api.url) as client:
        with pytest.raises(ConnectionFailedError) as info:
            await client.request("GET", client.url_for("/api/echo"))
    assert "TLS certificate was not accepted (self-signed certificate" in str(info.value)
    assert "tls.caBundle" in str(info.value)
    assert info.value.stalled and info.value.reason == "TlsVerifyFailed"
    assert client.requests == 1


async def test_ca_bundle_is_trusted(tls_api: TestApi, tls_files: tuple[Path, Path]) -> None:
    async with await make_client(tls_api.url, tls={"caBundle": tls_files[1].read_text()}) as client:
        response = await client.request("GET", client.url_for("/api/echo"))
    assert response.status_code == 200


async def test_insecure_skip_verify(tls_api: TestApi) -> None:
    async with await make_client(tls_api.url, tls={"insecureSkipVerify": True}) as client:
        response = await client.request("GET", client.url_for("/api/echo"))
    assert response.status_code == 200
