"""The one retry loop (httpsync.http.retry) against a real loopback server: which statuses and
transport errors are retried, the waits, the limiter pause, the errors it raises for its callers."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from httpsync.errors import (
    ConfigError,
    ConnectionFailedError,
    DestinationDeniedError,
    EngineError,
    HttpStatusError,
    SinkError,
    TimeoutFailedError,
)
from httpsync.http.auth import TokenEndpointError
from httpsync.http.limits import RequestLimiter
from httpsync.http.responses import body_start, is_rate_limited, is_retryable_status, status_text
from httpsync.http.retry import TRANSPORT_ERRORS, Retrier, RetryPolicy, backoff_delay, transport_rule
from httpsync.http.transport import AiohttpTransport, default_transport
from tests.http.scripted import Reply, Scripted

FAST = RetryPolicy(max_retries=2, backoff=0.001, max_backoff=0.01, max_retry_after=1.0, timeout=5)


@pytest.fixture
async def api() -> AsyncIterator[Scripted]:
    async with Scripted() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        yield client


def get(http: httpx.AsyncClient, url: str) -> Any:
    return lambda: http.get(url)


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "limited"),
    [
        (200, {}, False, False),
        (404, {}, False, False),
        (401, {}, False, False),
        (403, {}, False, False),
        (403, {"X-RateLimit-Remaining": "5"}, False, False),
        (403, {"X-RateLimit-Remaining": "0"}, True, True),
        (408, {}, True, False),
        (429, {}, True, True),
        (500, {}, True, False),
        (503, {}, True, False),
    ],
)
def test_which_statuses_a_retry_may_fix(status: int, headers: dict[str, str], retryable: bool, limited: bool) -> None:
    response = httpx.Response(status, headers=headers)
    assert is_retryable_status(response) is retryable
    assert is_rate_limited(response) is limited


def test_status_text_and_body_start() -> None:
    assert status_text(503) == "503 Service Unavailable" and status_text(599) == "599"
    assert body_start(httpx.Response(500, content=b"  a \n b  ")) == "a b"
    assert body_start(httpx.Response(500, content=b"")) == "(empty body)"
    assert body_start(httpx.Response(500, content=b"x" * 300)) == "x" * 200 + "..."


def test_backoff_is_full_jitter_capped() -> None:
    delays = [backoff_delay(10, 0.5, 2.0) for _ in range(200)]
    assert all(0 <= d <= 2.0 for d in delays) and max(delays) > 1.0
    policy = RetryPolicy(backoff=0.5, max_backoff=30, max_retry_after=3)
    assert policy.delay(0, asked=100) == 3  # the server's wait, capped
    assert policy.delay(0, asked=0.2) == 0.2
    assert 0 <= policy.delay(0) <= 0.5


# --------------------------------------------------------------------------- the transport table


def _cert_error() -> httpx.ConnectError:
    error = httpx.ConnectError("certificate verify failed")
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("exc", "retryable", "error", "reason"),
    [
        (TimeoutError(), True, TimeoutFailedError, None),
        (httpx.ReadTimeout("read timed out"), True, TimeoutFailedError, None),
        (httpx.ConnectTimeout("connect timed out"), True, TimeoutFailedError, None),
        (httpx.ConnectError("refused"), True, ConnectionFailedError, None),
        (httpx.ReadError("reset"), True, ConnectionFailedError, None),
        (httpx.RemoteProtocolError("disconnected"), True, ConnectionFailedError, None),
        (httpx.ProxyError("proxy unreachable"), True, ConnectionFailedError, None),
        (_cert_error(), False, ConnectionFailedError, "TlsVerifyFailed"),
        (httpx.TooManyRedirects("too many"), False, HttpStatusError, None),
        (httpx.InvalidURL("bad"), False, ConfigError, None),
        (httpx.UnsupportedProtocol("ftp"), False, ConfigError, None),
        (httpx.DecodingError("bad gzip"), False, ConnectionFailedError, None),
    ],
)
def test_one_table_translates_transport_errors(
    exc: BaseException, retryable: bool, error: type[EngineError], reason: str | None
) -> None:
    rule = transport_rule(exc)
    assert rule is not None
    assert (rule.retryable, rule.error, rule.reason) == (retryable, error, reason)


def test_other_exceptions_are_not_transport_failures() -> None:
    assert transport_rule(ValueError("a bug")) is None
    assert transport_rule(KeyError("x")) is None
    assert all(rule.exceptions for rule in TRANSPORT_ERRORS)


# --------------------------------------------------------------------------- the loop


async def test_a_5xx_burst_is_retried_and_each_attempt_reported(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/x", Reply(503, "busy"), Reply(502, "bad"))
    statuses: list[int | None] = []
    attempts: list[int] = []
    retrier = Retrier(FAST, on_response=statuses.append)
    response = await retrier.send("GET x", get(http, f"{api.url}/x"), on_attempt=lambda: attempts.append(1))
    assert response.status_code == 200
    assert statuses == [503, 502, 200] and len(attempts) == 3


async def test_a_non_retryable_status_is_returned_not_raised(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/x", Reply(404, "nope"))
    response = await Retrier(FAST).send("GET x", get(http, f"{api.url}/x"))
    assert response.status_code == 404 and len(api.to("/x")) == 1


async def test_exhausted_retries_raise_the_last_failure(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/x", *[Reply(503, "still broken")] * 3)
    with pytest.raises(HttpStatusError) as info:
        await Retrier(FAST).send(f"GET {api.url}/x", get(http, f"{api.url}/x"))
    assert str(info.value) == f"GET {api.url}/x returned 503 Service Unavailable (3 attempts): still broken"
    assert info.value.reason == "HttpError" and not info.value.stalled


async def test_a_caller_error_class_keeps_message_and_stalled(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/x", *[Reply(429, "slow down")] * 3)
    with pytest.raises(SinkError) as info:
        await Retrier(FAST, error=SinkError).send("POST hook", get(http, f"{api.url}/x"))
    assert str(info.value) == "POST hook returned 429 Too Many Requests (3 attempts): slow down"
    assert info.value.reason == "SinkFailed" and not info.value.stalled
    with pytest.raises(HttpStatusError) as table:  # the table's class: the rate limit is the reason
        api.script("/x", *[Reply(429, "slow down")] * 3)
        await Retrier(FAST).send("GET x", get(http, f"{api.url}/x"))
    assert table.value.reason == "RateLimited"


async def test_a_rate_limited_403_waits_as_asked(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/x", Reply(403, "rate limited", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.3"}))
    response = await Retrier(FAST).send("GET x", get(http, f"{api.url}/x"))
    assert response.status_code == 200
    first, second = api.to("/x")
    assert second.time - first.time >= 0.28


async def test_a_server_wait_holds_every_attempt_of_the_limiter(api: Scripted, http: httpx.AsyncClient) -> None:
    api.script("/limited", Reply(429, "wait", {"Retry-After": "0.4"}))
    retrier = Retrier(FAST, limiter=RequestLimiter(None))

    async def other() -> None:
        await asyncio.sleep(0.1)  # the 429 has been heard by then
        await retrier.send("GET other", get(http, f"{api.url}/other"))  # another request, same limiter

    await asyncio.gather(retrier.send("GET limited", get(http, f"{api.url}/limited")), other())
    limited, retried = api.to("/limited")
    (sent,) = api.to("/other")
    assert sent.time - limited.time >= 0.38  # held by the pause, though it never got a 429 itself
    assert retried.time - limited.time >= 0.38


async def test_transport_failures_are_retried_then_reported(http: httpx.AsyncClient) -> None:
    url = "http://127.0.0.1:9/x"  # discard port: nobody listens
    statuses: list[int | None] = []
    with pytest.raises(ConnectionFailedError) as info:
        await Retrier(FAST, on_response=statuses.append).send(f"GET {url}", get(http, url))
    assert str(info.value).startswith(f"GET {url} failed (3 attempts): ConnectError: ")
    assert statuses == [None, None, None]


async def test_the_attempt_timeout_is_a_retryable_timeout(api: Scripted) -> None:
    async def slow() -> httpx.Response:
        await asyncio.sleep(5)
        raise AssertionError("not reached")

    policy = RetryPolicy(max_retries=1, backoff=0.001, timeout=0.1)
    with pytest.raises(SinkError) as info:
        await Retrier(policy, error=SinkError).send("POST hook", slow)
    assert str(info.value) == "POST hook timed out after 0.1 s (2 attempts)"


async def test_an_invalid_url_fails_at_once(http: httpx.AsyncClient) -> None:
    statuses: list[int | None] = []
    with pytest.raises(ConfigError, match="invalid URL") as info:
        await Retrier(FAST, on_response=statuses.append).send("GET ftp", get(http, "ftp://127.0.0.1/x"))
    assert "attempts" not in str(info.value)
    assert statuses == []  # never sent


async def test_errors_of_hooks_pass_through_in_the_callers_class(api: Scripted) -> None:
    def deny(request: httpx.Request) -> None:
        raise DestinationDeniedError(f"host of {request.url} denied")

    async with httpx.AsyncClient(event_hooks={"request": [_async(deny)]}) as client:
        with pytest.raises(DestinationDeniedError):
            await Retrier(FAST).send("GET x", get(client, f"{api.url}/x"))
        with pytest.raises(SinkError) as info:
            await Retrier(FAST, error=SinkError).send("GET x", get(client, f"{api.url}/x"))
    assert info.value.reason == "DestinationDenied" and info.value.stalled
    assert api.log == []


def _async(fn: Any) -> Any:
    async def hook(request: httpx.Request) -> None:
        fn(request)

    return hook


async def test_token_endpoint_errors_retried_when_transient(api: Scripted) -> None:
    calls: list[float] = []

    async def failing(retryable: bool) -> httpx.Response:
        calls.append(time.monotonic())
        raise TokenEndpointError("the token endpoint returned 503", retryable=retryable, retry_after=0.2)

    with pytest.raises(SinkError) as info:
        await Retrier(FAST, error=SinkError).send("GET x", lambda: failing(True))
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.19  # its Retry-After honoured
    assert str(info.value) == "GET x failed (3 attempts): the token endpoint returned 503"
    assert not info.value.stalled
    calls.clear()
    with pytest.raises(TokenEndpointError) as refused:
        await Retrier(FAST).send("GET x", lambda: failing(False))
    assert len(calls) == 1 and refused.value.stalled


def test_default_transport_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPSYNC_HTTP_TRANSPORT", raising=False)
    assert isinstance(default_transport(), AiohttpTransport)
    monkeypatch.setenv("HTTPSYNC_HTTP_TRANSPORT", "httpx")
    assert default_transport() is None
