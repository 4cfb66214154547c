"""auth.type custom against a loopback login server: form and JSON logins, the login's values in a
header, a query parameter or the body, expiry (expiresInPath, reauthenticateInterval), one new login
on a 401, Secret references, and no credential in any message."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from httpsync.api.models import AuthSpec
from httpsync.engine.auth import jq_from_ocean_template
from httpsync.engine.client import SourceClient
from httpsync.errors import AuthError, ConfigError, HttpStatusError
from tests.loopback import LoopbackServer
from tests.testapi.fixtures import StaticSecrets, source_spec

USER = "alice"
PASSWORD = "pa55-w0rd-of-alice"
ITEMS = [{"id": i, "name": f"item-{i}"} for i in range(3)]


class LoginApi(LoopbackServer):
    """Logins give fresh tokens; the API accepts only tokens still valid (``revoke`` ends them all)."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.logins: list[dict[str, Any]] = []
        self.api_requests: list[web.Request] = []
        self.bodies: list[Any] = []
        self.expires_in: Any = 3600
        self.broken_tokens = False  # logins succeed but give tokens the API refuses
        self.unavailable = 0  # answer this many logins with a 503
        self._n = itertools.count(1)
        app = web.Application()
        app.router.add_post("/login/form", self.login_form)
        app.router.add_post("/login/json", self.login_json)
        app.router.add_get("/api/items", self.items)
        app.router.add_post("/api/search", self.search)
        app.router.add_get("/api/echo", self.echo)
        super().__init__(app)

    def _token(self) -> str:
        token = f"tok-{next(self._n)}-9f8e7d6c5b4a"
        if not self.broken_tokens:
            self.valid.add(token)
        return token

    def revoke(self) -> None:
        self.valid.clear()

    async def login_form(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.logins.append({"form": form, "query": dict(request.query), "headers": dict(request.headers)})
        if self.unavailable:
            self.unavailable -= 1
            return web.json_response({"error": "try later"}, status=503)
        if form.get("username") != USER or form.get("password") != PASSWORD:
            return web.json_response({"error": "invalid_grant", "got": form.get("password")}, status=401)
        return web.json_response({"access_token": self._token(), "token_type": "Bearer", "expires_in": self.expires_in})

    async def login_json(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.logins.append({"json": body, "query": dict(request.query), "headers": dict(request.headers)})
        if body != {"credentials": {"user": USER, "password": PASSWORD}}:
            return web.json_response({"error": "bad credentials"}, status=403)
        return web.json_response({"data": {"session": self._token(), "ttl": self.expires_in}})

    def _authorized(self, request: web.Request, body: Any = None) -> bool:
        header = request.headers.get("Authorization", "")
        candidates = {
            header.removeprefix("Bearer "),
            request.query.get("session", ""),
            request.headers.get("X-Session", ""),
            (body or {}).get("api_token", "") if isinstance(body, dict) else "",
        }
        return bool(candidates & self.valid)

    async def items(self, request: web.Request) -> web.Response:
        self.api_requests.append(request)
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response(ITEMS)

    async def search(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.api_requests.append(request)
        self.bodies.append(body)
        if not self._authorized(request, body):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"results": ITEMS[: body.get("limit", 3)]})

    async def echo(self, request: web.Request) -> web.Response:
        self.api_requests.append(request)
        if not self._authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"error": f"token {request.headers.get('Authorization')} lacks a scope"}, status=400)


@pytest.fixture
async def login_api() -> AsyncIterator[LoginApi]:
    async with LoginApi() as api:
        yield api


SECRETS = {"login": {"user": USER, "password": PASSWORD}}


def form_login(**custom: Any) -> dict[str, Any]:
    return {
        "type": "custom",
        "secretRef": {"name": "login"},
        "custom": {
            "request": {"url": "/login/form", "bodyForm": {"username": "${user}", "password": "${password}"}},
            "template": {"headers": {"Authorization": '"Bearer " + .access_token'}},
            **custom,
        },
    }


def json_login(template: dict[str, Any], **custom: Any) -> dict[str, Any]:
    return {
        "type": "custom",
        "secretRef": {"name": "login"},
        "custom": {
            "request": {
                "url": "/login/json",
                "body": {"credentials": {"user": "${user}", "password": "${password}"}},
                "queryParams": {"client": "httpsync"},
            },
            "template": template,
            **custom,
        },
    }


async def client_for(api: LoginApi, auth: dict[str, Any], secrets: dict[str, Any] | None = None) -> SourceClient:
    spec = source_spec(api.url, auth=auth)
    return await SourceClient.create(spec, StaticSecrets(SECRETS if secrets is None else secrets))


async def get_items(client: SourceClient) -> Any:
    body, _ = await client.get_json("GET", client.url_for("/api/items"))
    return body


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("httpsync.http.auth.time", fake)
    return fake


def assert_no_credential(text: str, api: LoginApi) -> None:
    assert PASSWORD not in text
    for token in api.valid:
        assert token not in text
    assert "9f8e7d6c5b4a" not in text  # no token, valid or not


# --------------------------------------------------------------------------- logins and templates


async def test_form_login_token_in_a_header(login_api: LoginApi) -> None:
    async with await client_for(login_api, form_login()) as client:
        assert await get_items(client) == ITEMS
        assert await get_items(client) == ITEMS
    assert len(login_api.logins) == 1  # the login is kept
    login = login_api.logins[0]
    assert login["form"] == {"username": USER, "password": PASSWORD}  # ${key} filled from the Secret
    assert login["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert [r.headers["Authorization"] for r in login_api.api_requests] == ["Bearer tok-1-9f8e7d6c5b4a"] * 2


async def test_json_login_token_in_a_query_parameter(login_api: LoginApi) -> None:
    auth = json_login({"queryParams": {"session": ".data.session"}})
    async with await client_for(login_api, auth) as client:
        assert await get_items(client) == ITEMS
    login = login_api.logins[0]
    assert login["json"] == {"credentials": {"user": USER, "password": PASSWORD}}
    assert login["query"] == {"client": "httpsync"}
    (request,) = login_api.api_requests
    assert request.query["session"] == "tok-1-9f8e7d6c5b4a"
    assert "Authorization" not in request.headers
    assert client.display(str(request.url)).endswith("session=***")


async def test_login_values_merged_into_a_json_body(login_api: LoginApi) -> None:
    auth = json_login({"body": {"api_token": ".data.session"}, "headers": {"X-Session": ".data.session"}})
    async with await client_for(login_api, auth) as client:
        body, _ = await client.get_json("POST", client.url_for("/api/search"), json_body={"limit": 2})
        await get_items(client)  # a GET keeps no body
    assert body == {"results": ITEMS[:2]}
    assert login_api.bodies == [{"limit": 2, "api_token": "tok-1-9f8e7d6c5b4a"}]
    assert login_api.api_requests[1].method == "GET" and login_api.api_requests[1].headers["X-Session"]
    assert not login_api.api_requests[1].can_read_body


async def test_a_non_string_template_value_is_sent_as_json_text(login_api: LoginApi) -> None:
    login_api.expires_in = 7200
    auth = json_login({"headers": {"X-Session": ".data.session", "X-Ttl": ".data.ttl"}})
    async with await client_for(login_api, auth) as client:
        await get_items(client)
    assert login_api.api_requests[0].headers["X-Ttl"] == "7200"


async def test_concurrent_requests_share_one_login(login_api: LoginApi) -> None:
    async with await client_for(login_api, form_login()) as client:
        bodies = await asyncio.gather(*(get_items(client) for _ in range(10)))
        assert bodies == [ITEMS] * 10
        login_api.revoke()  # all refused at once: one new login between them
        assert await asyncio.gather(*(get_items(client) for _ in range(10))) == [ITEMS] * 10
    assert len(login_api.logins) == 2


# --------------------------------------------------------------------------- when to log in again


async def test_expires_in_path_renews_the_login_before_it_expires(login_api: LoginApi, clock: FakeClock) -> None:
    login_api.expires_in = 600
    async with await client_for(login_api, form_login(expiresInPath=".expires_in")) as client:
        await get_items(client)
        clock.now += 500  # within the lifetime minus the margin (30 s)
        await get_items(client)
        assert len(login_api.logins) == 1
        clock.now += 80  # 580 s: inside the margin
        await get_items(client)
    assert len(login_api.logins) == 2
    tokens = [r.headers["Authorization"] for r in login_api.api_requests]
    assert tokens == ["Bearer tok-1-9f8e7d6c5b4a"] * 2 + ["Bearer tok-2-9f8e7d6c5b4a"]


async def test_reauthenticate_interval(login_api: LoginApi, clock: FakeClock) -> None:
    login_api.expires_in = None
    async with await client_for(login_api, form_login(reauthenticateInterval="10m")) as client:
        await get_items(client)
        clock.now += 500
        await get_items(client)
        assert len(login_api.logins) == 1
        clock.now += 100  # 600 s
        await get_items(client)
    assert len(login_api.logins) == 2


async def test_expires_in_path_wins_over_the_interval_and_falls_back_to_it(
    login_api: LoginApi, clock: FakeClock
) -> None:
    login_api.expires_in = 100
    auth = form_login(expiresInPath=".expires_in", reauthenticateInterval="1h")
    async with await client_for(login_api, auth) as client:
        await get_items(client)
        clock.now += 95
        await get_items(client)
        assert len(login_api.logins) == 2  # 100 s, not 1 h
        login_api.expires_in = "soon"  # not a number: the interval applies
        clock.now += 95
        await get_items(client)
        assert len(login_api.logins) == 3
        clock.now += 3000
        await get_items(client)
        assert len(login_api.logins) == 3


async def test_without_expiry_the_login_is_kept_until_a_401(login_api: LoginApi, clock: FakeClock) -> None:
    async with await client_for(login_api, form_login()) as client:
        await get_items(client)
        clock.now += 10 * 86400
        await get_items(client)
        assert len(login_api.logins) == 1
        login_api.revoke()
        assert await get_items(client) == ITEMS
    assert len(login_api.logins) == 2  # once on the 401
    assert len(login_api.api_requests) == 4  # the refused request was sent again with the new token


async def test_a_401_after_a_fresh_login_is_an_auth_error(login_api: LoginApi) -> None:
    login_api.broken_tokens = True
    async with await client_for(login_api, form_login()) as client:
        with pytest.raises(AuthError) as info:
            await get_items(client)
    message = str(info.value)
    assert "returned 401 Unauthorized" in message
    assert "check the login of auth.custom.request (/login/form)" in message
    assert "Secret 'login' (keys 'user', 'password')" in message
    assert len(login_api.logins) == 2  # the first one, and once more on the 401: no loop
    assert_no_credential(message, login_api)


# --------------------------------------------------------------------------- failures and secrets


async def test_a_refused_login_names_the_login_endpoint_and_no_secret(login_api: LoginApi) -> None:
    secrets = {"login": {"user": USER, "password": "wrong-password-123"}}
    async with await client_for(login_api, form_login(), secrets) as client:
        with pytest.raises(AuthError) as info:
            await get_items(client)
    message = str(info.value)
    assert message.startswith(f"the login endpoint {login_api.url}/login/form returned 401 Unauthorized")
    assert "check auth.custom.request" in message
    assert "wrong-password-123" not in message  # the server echoed it: redacted
    assert info.value.stalled and info.value.reason == "AuthenticationFailed"
    assert login_api.api_requests == []


async def test_a_login_answering_503_is_retried(login_api: LoginApi) -> None:
    login_api.unavailable = 2
    async with await client_for(login_api, form_login()) as client:
        assert await get_items(client) == ITEMS
    assert len(login_api.logins) == 3 and len(login_api.api_requests) == 1


async def test_login_values_are_redacted_where_the_api_echoes_them(login_api: LoginApi) -> None:
    async with await client_for(login_api, form_login()) as client:
        with pytest.raises(HttpStatusError) as info:
            await client.request("GET", client.url_for("/api/echo"))
    assert "token *** lacks a scope" in str(info.value)
    assert_no_credential(str(info.value), login_api)


async def test_a_template_that_finds_nothing_is_a_clear_error(login_api: LoginApi) -> None:
    auth = json_login({"headers": {"X-Session": ".data.missing"}})
    async with await client_for(login_api, auth) as client:
        with pytest.raises(AuthError) as info:
            await get_items(client)
    message = str(info.value)
    assert "auth.custom.template.headers.X-Session '.data.missing' gave null" in message
    assert "(response keys: data)" in message
    assert_no_credential(message, login_api)


async def test_a_secret_reference_needs_a_secret_ref(login_api: LoginApi) -> None:
    auth = form_login()
    del auth["secretRef"]
    with pytest.raises(ConfigError, match=r"uses \$\{user\}, \$\{password\}: set auth.secretRef"):
        await client_for(login_api, auth)


async def test_a_login_without_secret_references_needs_no_secret(login_api: LoginApi) -> None:
    auth = form_login()
    del auth["secretRef"]
    auth["custom"]["request"]["bodyForm"] = {"username": USER, "password": PASSWORD, "note": "$${literal}"}
    async with await client_for(login_api, auth, secrets={}) as client:
        assert await get_items(client) == ITEMS
    assert login_api.logins[0]["form"]["note"] == "${literal}"


async def test_a_login_on_another_host_is_allowed(login_api: LoginApi) -> None:
    async with LoginApi() as other:
        auth = form_login()
        auth["custom"]["request"]["url"] = f"{other.url}/login/form"
        spec = source_spec(login_api.url, auth=auth)
        async with await SourceClient.create(spec, StaticSecrets(SECRETS)) as client:
            login_api.valid = other.valid  # the API trusts the other host's tokens
            assert await get_items(client) == ITEMS
    assert len(other.logins) == 1 and login_api.logins == []


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"type": "custom"}, "auth.custom is required for auth.type custom"),
        (
            {"type": "bearer", "secretRef": {"name": "s"}, "custom": json.loads(json.dumps(form_login()["custom"]))},
            "only valid for it",
        ),
        (
            {"type": "custom", "custom": {"request": {"url": "/l", "body": {}, "bodyForm": {}}, "template": {}}},
            "set body (JSON) or bodyForm",
        ),
        (
            {"type": "custom", "custom": {"request": {"url": "/l"}, "template": {}}},
            "needs at least one of headers, queryParams or body",
        ),
        (
            {"type": "custom", "custom": {"request": {"url": "/l", "body": [1]}, "template": {"body": {"a": "."}}}},
            "must be a JSON object",
        ),
    ],
)
def test_invalid_custom_auth_specs_are_refused(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        AuthSpec.model_validate(auth)


# --------------------------------------------------------------------------- Ocean's templates


@pytest.mark.parametrize(
    ("template", "jq"),
    [
        ("Bearer {{.access_token}}", '"Bearer " + ((.access_token // error("the login response has no .access_token")) '
         "| tostring)"),
        ("{{ .data.session }}", '(.data.session // error("the login response has no .data.session"))'),
        ("static", '"static"'),
    ],
)  # fmt: skip
def test_jq_from_ocean_template(template: str, jq: str) -> None:
    assert jq_from_ocean_template(template) == jq


async def test_an_ocean_template_converted_to_jq_logs_in(login_api: LoginApi) -> None:
    auth = form_login()
    auth["custom"]["template"] = {"headers": {"Authorization": jq_from_ocean_template("Bearer {{.access_token}}")}}
    async with await client_for(login_api, auth) as client:
        assert await get_items(client) == ITEMS
    auth["custom"]["template"] = {"headers": {"Authorization": jq_from_ocean_template("Bearer {{.accessToken}}")}}
    async with await client_for(login_api, auth) as client:
        with pytest.raises(AuthError, match=r"failed on the response of .*: the login response has no \.accessToken"):
            await get_items(client)


async def test_a_jq_error_on_the_login_response_does_not_quote_its_token(login_api: LoginApi) -> None:
    auth = form_login()
    auth["custom"]["template"] = {"headers": {"X-Token-Number": ".access_token | tonumber"}}
    async with await client_for(login_api, auth) as client:
        with pytest.raises(AuthError) as info:
            await get_items(client)
    message = str(info.value)
    assert "auth.custom.template.headers.X-Token-Number '.access_token | tonumber' failed" in message
    assert "9f8e7d6c5b4a" not in message and "***" in message
