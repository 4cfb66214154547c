"""The token-auth base class (httpsync.http.auth.TokenAuth) against a real loopback token endpoint:
one fetch for concurrent requests, renewal before expiry, one refresh and resend on a 401, errors
that tell the retry loop what to do, and no token or secret in any message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from httpsync.errors import AuthError, SinkError
from httpsync.http.auth import TokenAuth, TokenEndpointError
from httpsync.http.redact import redact, register_secret
from httpsync.http.retry import Retrier, RetryPolicy
from httpsync.http.transport import AiohttpTransport
from tests.http.scripted import Logged, Reply, Scripted

KEY = "demo-key-secret-4b9e1f"
FAST = RetryPolicy(max_retries=2, backoff=0.001, max_backoff=0.01, max_retry_after=1.0, timeout=5)


class DemoAuth(TokenAuth):
    """A token endpoint answering ``{"token", "ttl", "scheme"}`` to ``POST /token {"key"}``."""

    MARGIN_SECONDS = 1.0
    TOKEN_FIELD = "token"
    EXPIRES_FIELD = "ttl"
    TYPE_FIELD = "scheme"
    ERROR_REASON = "DemoAuthFailed"
    REFUSED_HINT = "check the demo key"

    def __init__(self, base_url: str, key: str = KEY) -> None:
        register_secret(key)
        super().__init__(f"{base_url}/token", endpoint=f"the demo token endpoint {base_url}/token")
        self._key = key

    def build_token_request(self) -> httpx.Request:
        return httpx.Request("POST", self.token_url, json={"key": self._key})


class Tokens:
    """Answers of the token endpoint: ``tok-1``, ``tok-2``... valid ``ttl`` seconds."""

    def __init__(self, ttl: float | None = 3600) -> None:
        self.issued: list[str] = []
        self.ttl = ttl

    def __call__(self, request: Logged) -> dict[str, Any]:
        token = f"tok-{len(self.issued) + 1}-0f0f0f"
        self.issued.append(token)
        answer: dict[str, Any] = {"token": token, "scheme": "Demo"}
        if self.ttl is not None:
            answer["ttl"] = self.ttl
        return answer


@pytest.fixture
async def api() -> AsyncIterator[Scripted]:
    async with Scripted() as server:
        yield server


def tokens(api: Scripted, answers: Tokens, n: int = 20) -> Tokens:
    api.script("/token", *[Reply(200, answers)] * n)
    return answers


def client(auth: TokenAuth) -> httpx.AsyncClient:
    return httpx.AsyncClient(auth=auth, transport=AiohttpTransport())


def sent_authorization(api: Scripted) -> list[str]:
    return [r.headers.get("authorization", "") for r in api.to("/api")]


async def test_concurrent_requests_share_one_token(api: Scripted) -> None:
    answers = tokens(api, Tokens())
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        responses = await asyncio.gather(*(http.get(f"{api.url}/api") for _ in range(8)))
    assert all(r.status_code == 200 for r in responses)
    (token_request,) = api.to("/token")
    assert token_request.json() == {"key": KEY}
    assert auth.token_requests == 1 and answers.issued == ["tok-1-0f0f0f"]
    assert set(sent_authorization(api)) == {"Demo tok-1-0f0f0f"}  # the answer's scheme
    assert redact("got tok-1-0f0f0f") == "got ***"


async def test_a_token_is_renewed_shortly_before_it_expires(api: Scripted) -> None:
    tokens(api, Tokens(ttl=0.4))  # used until 0.36 s (10% early)
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        await http.get(f"{api.url}/api")
        await http.get(f"{api.url}/api")
        await asyncio.sleep(0.38)
        await http.get(f"{api.url}/api")
    assert auth.token_requests == 2
    assert sent_authorization(api) == ["Demo tok-1-0f0f0f", "Demo tok-1-0f0f0f", "Demo tok-2-0f0f0f"]


async def test_a_token_without_expiry_is_used_until_refused(api: Scripted) -> None:
    tokens(api, Tokens(ttl=None))
    api.script("/api", Reply(200), Reply(200), Reply(401, "expired"))
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        for _ in range(3):
            assert (await http.get(f"{api.url}/api")).status_code == 200
    assert auth.token_requests == 2  # the first, and one after the 401
    assert sent_authorization(api) == ["Demo tok-1-0f0f0f"] * 3 + ["Demo tok-2-0f0f0f"]


async def test_a_401_refreshes_once_and_resends(api: Scripted) -> None:
    tokens(api, Tokens())
    api.script("/api", Reply(401, "revoked"), Reply(401, "still refused"))
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        response = await http.get(f"{api.url}/api")
    assert response.status_code == 401  # a second 401 is the caller's to report: no refresh loop
    assert auth.token_requests == 2 and auth.generation == 2
    assert [r.status for r in api.to("/api")] == [401, 401]


async def test_concurrent_401s_share_one_refresh(api: Scripted) -> None:
    tokens(api, Tokens())
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        await http.get(f"{api.url}/api")
        api.script("/api", *[Reply(401, "revoked")] * 5)
        responses = await asyncio.gather(*(http.get(f"{api.url}/api") for _ in range(5)))
    assert [r.status_code for r in responses] == [200] * 5
    assert auth.token_requests == 2


async def test_a_transient_token_failure_is_retried_by_the_loop_after_its_wait(api: Scripted) -> None:
    api.script("/token", Reply(503, "down for a moment", {"Retry-After": "0.2"}))
    tokens(api, Tokens())
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        response = await Retrier(FAST, error=SinkError).send("GET api", lambda: http.get(f"{api.url}/api"))
    assert response.status_code == 200
    first, second = api.to("/token")
    assert (first.status, second.status) == (503, 200) and second.time - first.time >= 0.19
    assert len(api.to("/api")) == 1


async def test_a_refusal_is_final_and_redacted(api: Scripted) -> None:
    api.script("/token", Reply(401, f"bad key {KEY}"))
    auth = DemoAuth(api.url)
    async with client(auth) as http:
        with pytest.raises(TokenEndpointError) as info:
            await Retrier(FAST).send("GET api", lambda: http.get(f"{api.url}/api"))
        api.script("/token", Reply(401, "no"))
        with pytest.raises(SinkError) as as_sink:
            await Retrier(FAST, error=SinkError).send("GET api", lambda: http.get(f"{api.url}/api"))
    assert str(info.value) == (
        f"the demo token endpoint {api.url}/token returned 401 Unauthorized: bad key ***; check the demo key"
    )
    assert isinstance(info.value, AuthError) and info.value.stalled and not info.value.retryable
    assert info.value.reason == "DemoAuthFailed"
    assert as_sink.value.reason == "DemoAuthFailed" and as_sink.value.stalled
    assert len(api.to("/token")) == 2 and api.to("/api") == []


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, "<html>login</html>"), "did not return JSON (content-type text/plain; charset=utf-8): <html>"),
        (Reply(200, {"access": "x"}), "returned no token (got: access)"),
        (Reply(200, ["x"]), "returned no token (got: list)"),
    ],
)
async def test_an_unusable_answer_is_final(api: Scripted, reply: Reply, message: str) -> None:
    api.script("/token", reply)
    async with client(DemoAuth(api.url)) as http:
        with pytest.raises(TokenEndpointError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            await http.get(f"{api.url}/api")
    assert not info.value.retryable


async def test_authorization_fetches_a_token_outside_a_request(api: Scripted) -> None:
    tokens(api, Tokens())
    auth = DemoAuth(api.url)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        first = await auth.authorization(http.send)
        second = await auth.authorization(http.send)
    assert first == second == "Demo tok-1-0f0f0f"
    assert auth.token_requests == 1


def test_the_sync_flow_is_refused() -> None:
    with pytest.raises(RuntimeError, match="AsyncClient only"):
        next(DemoAuth("http://127.0.0.1:9").sync_auth_flow(httpx.Request("GET", "http://127.0.0.1:9/")))
