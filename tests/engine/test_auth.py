"""Every auth style against the real test API; OAuth2 caching, expiry, refresh; no secret in errors."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from httpsync.api.models import AuthSpec, AuthType
from httpsync.engine.auth import OAuth2ClientCredentials, build_auth
from httpsync.engine.client import SourceClient
from httpsync.errors import AuthError, ConfigError, HttpStatusError, SecretError
from httpsync.http.redact import redact
from tests.testapi import server
from tests.testapi.fixtures import StaticSecrets, source_spec
from tests.testapi.server import TestApi

ALL_SECRETS = [
    server.BEARER_TOKEN,
    server.API_KEY,
    server.BASIC_PASSWORD,
    server.CLIENT_SECRET,
    "wrong-token-value-1",
    "wrong-api-key-value-1",
    "wrong-client-secret-1",
]


def oauth(testapi: TestApi, secret: str = "oauth", **fields: Any) -> dict[str, Any]:
    return {
        "type": "oauth2ClientCredentials",
        "secretRef": {"name": secret},
        "tokenUrl": f"{testapi.url}/oauth/token",
        **fields,
    }


async def client_for(testapi: TestApi, auth: dict[str, Any], secrets: StaticSecrets | None = None) -> SourceClient:
    return await SourceClient.create(source_spec(testapi.url, auth=auth), secrets or StaticSecrets())


async def get_users(client: SourceClient, style: str, query: str = "") -> Any:
    body, _ = await client.get_json("GET", client.url_for(f"/auth/{style}/users{query}"))
    return body


def assert_no_secret(text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    ("style", "auth", "query"),
    [
        ("bearer", {"type": "bearer", "secretRef": {"name": "bearer"}}, ""),
        ("apikey", {"type": "apiKey", "secretRef": {"name": "apikey"}}, ""),
        ("apikey", {"type": "apiKey", "secretRef": {"name": "apikey"}, "header": "X-Token"}, "?header=X-Token"),
        ("apikey-query", {"type": "apiKey", "secretRef": {"name": "apikey"}, "queryParam": "api_key"}, ""),
        ("basic", {"type": "basic", "secretRef": {"name": "basic"}}, ""),
    ],
)
async def test_static_credentials(testapi: TestApi, style: str, auth: dict[str, Any], query: str) -> None:
    async with await client_for(testapi, auth) as client:
        assert len(await get_users(client, style, query)) == 5


async def test_secret_ref_key_overrides_the_default_key(testapi: TestApi) -> None:
    secrets = StaticSecrets({"s": {"my-token": server.BEARER_TOKEN}})
    async with await client_for(testapi, {"type": "bearer", "secretRef": {"name": "s", "key": "my-token"}}, secrets):
        pass
    assert secrets.reads == [("s", "my-token")]


async def test_basic_keys_are_configurable(testapi: TestApi) -> None:
    secrets = StaticSecrets({"s": {"u": server.BASIC_USER, "p": server.BASIC_PASSWORD}})
    auth = {"type": "basic", "secretRef": {"name": "s"}, "usernameKey": "u", "passwordKey": "p"}
    async with await client_for(testapi, auth, secrets) as client:
        assert len(await get_users(client, "basic")) == 5


async def test_a_missing_secret_key_is_a_secret_error(testapi: TestApi) -> None:
    with pytest.raises(SecretError, match="no key 'token'"):
        await client_for(testapi, {"type": "bearer", "secretRef": {"name": "apikey"}})


async def test_auth_without_secret_ref_is_a_config_error() -> None:
    spec = AuthSpec.model_construct(type=AuthType.bearer, secret_ref=None)  # the model refuses it too
    with pytest.raises(ConfigError, match="secretRef"):
        await build_auth(spec, StaticSecrets())


@pytest.mark.parametrize(
    ("style", "auth", "secret"),
    [
        ("bearer", {"type": "bearer", "secretRef": {"name": "wrong"}}, "wrong-token-value-1"),
        ("apikey-query", {"type": "apiKey", "secretRef": {"name": "wrong"}, "queryParam": "api_key"}, "wrong-api-key"),
    ],
)
async def test_refused_credentials_are_an_auth_error(
    testapi: TestApi, style: str, auth: dict[str, Any], secret: str
) -> None:
    async with await client_for(testapi, auth) as client:
        with pytest.raises(AuthError) as info:
            await get_users(client, style)
    message = str(info.value)
    assert message.startswith(f"GET {testapi.url}/auth/{style}/users returned 401 Unauthorized")
    assert f"The source at {testapi.url} refused the credentials" in message
    assert "Secret 'wrong'" in message
    assert info.value.stalled
    assert_no_secret(message)
    assert len(testapi.requests_to(f"/auth/{style}/users")) == 1  # a 401 is not retried


async def test_credentials_echoed_by_the_server_are_redacted(testapi: TestApi) -> None:
    async with await client_for(testapi, {"type": "bearer", "secretRef": {"name": "bearer"}}) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/fault/echo-auth"))
    assert "invalid credentials: got Bearer ***" in str(info.value)
    assert_no_secret(str(info.value))


async def test_api_key_query_param_is_masked(testapi: TestApi) -> None:
    auth = {"type": "apiKey", "secretRef": {"name": "apikey"}, "queryParam": "api_key"}
    async with await client_for(testapi, auth) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/fault/echo-auth"))
    assert testapi.requests_to("/fault/echo-auth")[0].query == {"api_key": server.API_KEY}
    assert_no_secret(str(info.value))


# --------------------------------------------------------------------------- OAuth2


async def test_oauth2_token_is_cached(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi, scopes=["read", "write"], audience="api://x")) as client:
        for _ in range(10):
            await get_users(client, "oauth")
    assert testapi.state.token_requests == 1
    (form,) = testapi.state.token_forms
    assert form == {
        "grant_type": "client_credentials",
        "scope": "read write",
        "audience": "api://x",
        "client_id": server.CLIENT_ID,
        "client_secret": server.CLIENT_SECRET,
    }


async def test_oauth2_basic_client_auth(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi, clientAuthMethod="basic")) as client:
        await get_users(client, "oauth")
    (token_request,) = testapi.requests_to("/oauth/token")
    expected = base64.b64encode(f"{server.CLIENT_ID}:{server.CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"
    assert "client_secret" not in testapi.state.token_forms[0]


async def test_concurrent_first_requests_share_one_token(testapi: TestApi) -> None:
    testapi.state.token_delay = 0.05
    async with await client_for(testapi, oauth(testapi)) as client:
        await asyncio.gather(*(get_users(client, "oauth") for _ in range(8)))
    assert testapi.state.token_requests == 1


async def test_oauth2_token_is_refreshed_before_it_expires(testapi: TestApi) -> None:
    testapi.state.token_ttl = 0.4  # the client renews 10% early: after 0.36 s
    async with await client_for(testapi, oauth(testapi)) as client:
        await get_users(client, "oauth")
        await get_users(client, "oauth")
        assert testapi.state.token_requests == 1
        await asyncio.sleep(0.45)
        await get_users(client, "oauth")
    assert testapi.state.token_requests == 2
    assert all(r.status == 200 for r in testapi.requests_to("/auth/oauth"))  # renewed before any 401


async def test_a_401_refreshes_once_and_resends(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi)) as client:
        await get_users(client, "oauth")
        testapi.state.revoke_tokens()
        assert len(await get_users(client, "oauth")) == 5
    assert testapi.state.token_requests == 2
    assert [r.status for r in testapi.requests_to("/auth/oauth")] == [200, 401, 200]
    assert client.requests == 2  # the resend is part of the attempt, not a retry


async def test_concurrent_401s_share_one_refresh(testapi: TestApi) -> None:
    testapi.state.token_delay = 0.05
    async with await client_for(testapi, oauth(testapi)) as client:
        await get_users(client, "oauth")
        testapi.state.revoke_tokens()
        await asyncio.gather(*(get_users(client, "oauth") for _ in range(8)))
    assert testapi.state.token_requests == 2
    statuses = [r.status for r in testapi.requests_to("/auth/oauth")]
    assert statuses.count(200) == 9


async def test_a_401_that_persists_after_refresh_is_an_auth_error(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi)) as client:
        with pytest.raises(AuthError) as info:
            await client.request("GET", client.url_for("/fault/status/401"))
    assert testapi.state.token_requests == 2  # the first token, then one refresh
    assert len(testapi.requests_to("/fault/status/401")) == 2
    assert "check the oauth2ClientCredentials credentials in Secret 'oauth'" in str(info.value)
    assert_no_secret(str(info.value))


async def test_a_403_is_an_auth_error_without_refresh(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi)) as client:
        with pytest.raises(AuthError, match=r"403 Forbidden.*denied access"):
            await client.request("GET", client.url_for("/fault/status/403"))
    assert testapi.state.token_requests == 1


async def test_token_endpoint_refusal(testapi: TestApi) -> None:
    async with await client_for(testapi, oauth(testapi, secret="wrong")) as client:
        with pytest.raises(AuthError) as info:
            await get_users(client, "oauth")
    message = str(info.value)
    assert f"the OAuth2 token endpoint {testapi.url}/oauth/token returned 401 Unauthorized" in message
    assert '{"error": "invalid_client"}' in message
    assert info.value.stalled
    assert testapi.state.token_requests == 1  # a refusal is not retried
    assert_no_secret(message)


async def test_a_failing_token_endpoint_is_retried_then_reported(testapi: TestApi) -> None:
    auth = oauth(testapi, tokenUrl=f"{testapi.url}/fault/flaky/token?fail=10&status=503")
    spec = source_spec(testapi.url, auth=auth, retry={"maxRetries": 2, "backoffSeconds": 0.001})
    async with await SourceClient.create(spec, StaticSecrets()) as client:
        with pytest.raises(AuthError) as info:
            await get_users(client, "oauth")
    assert str(info.value).startswith(
        f"GET {testapi.url}/auth/oauth/users failed (3 attempts): the OAuth2 token endpoint "
        f"{testapi.url}/fault/flaky/token?fail=10&status=503 returned 503 Service Unavailable"
    )
    assert not info.value.stalled  # transient: the next sync may work
    assert len(testapi.requests_to("/fault/flaky/token")) == 3
    assert testapi.requests_to("/auth/oauth") == []


async def test_token_endpoint_echoing_the_secret_is_redacted(testapi: TestApi) -> None:
    auth = oauth(testapi, tokenUrl="/oauth/token-fail")  # relative: resolved against baseUrl
    async with await client_for(testapi, auth) as client:
        with pytest.raises(AuthError) as info:
            await get_users(client, "oauth")
    assert "400 Bad Request" in str(info.value) and '"received": "***"' in str(info.value)
    assert_no_secret(str(info.value))


async def test_build_auth_registers_secrets_for_redaction() -> None:
    secrets = StaticSecrets({"s": {"clientId": "cid-abcdef", "clientSecret": "csec-registered-1"}})
    spec = AuthSpec.model_validate(
        {"type": "oauth2ClientCredentials", "secretRef": {"name": "s"}, "tokenUrl": "https://idp.test/token"}
    )
    auth = await build_auth(spec, secrets)
    assert isinstance(auth, OAuth2ClientCredentials)
    assert redact("x csec-registered-1 y") == "x *** y"
