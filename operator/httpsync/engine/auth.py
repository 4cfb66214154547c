"""Authentication of requests to a source, as small ``httpx.Auth`` classes, built from the spec
by :func:`build_auth`.

Credentials are read from Secrets once and registered with the redactor, so they never show in
messages. OAuth2 client credentials derive from :class:`httpsync.http.auth.TokenAuth`: tokens
cached until shortly before they expire and refreshed once on a 401 (inside one attempt of the
client's retry loop), concurrent requests sharing one refresh.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx

from httpsync.api.models import AuthSpec, AuthType, ClientAuthMethod
from httpsync.engine.types import SecretResolver
from httpsync.engine.url import display_url, is_absolute, join_url
from httpsync.errors import ConfigError
from httpsync.http.auth import TokenAuth
from httpsync.http.redact import register_secret

DEFAULT_API_KEY_HEADER = "X-API-Key"


class NoAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        register_secret(token)
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ApiKeyAuth(httpx.Auth):
    """An API key in a header (default ``X-API-Key``) or in a query parameter."""

    def __init__(self, key: str, *, header: str | None = None, query_param: str | None = None) -> None:
        register_secret(key)
        self._key = key
        self.query_param = query_param
        self.header = None if query_param else (header or DEFAULT_API_KEY_HEADER)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.query_param:
            request.url = request.url.copy_merge_params({self.query_param: self._key})
        else:
            assert self.header is not None
            request.headers[self.header] = self._key
        yield request


class BasicAuth(httpx.BasicAuth):
    def __init__(self, username: str, password: str) -> None:
        register_secret(username)
        register_secret(password)
        super().__init__(username, password)
        register_secret(self._auth_header.removeprefix("Basic "))


class OAuth2ClientCredentials(TokenAuth):
    """OAuth2 client credentials grant (RFC 6749 section 4.4): the token cache, its renewal and the
    401 refresh are :class:`TokenAuth`'s.

    The token is cached until ``expires_in`` minus a margin (10% of the lifetime, at most 30 s); a
    token without ``expires_in`` is used until the API refuses it.
    """

    REFUSED_HINT = "check the client id and secret in the Secret, and auth.scopes/audience"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: list[str] | None = None,
        audience: str | None = None,
        client_auth: ClientAuthMethod = ClientAuthMethod.form,
    ) -> None:
        register_secret(client_secret)
        super().__init__(token_url, endpoint=f"the OAuth2 token endpoint {display_url(token_url)}")
        self._client_id = client_id
        self._client_secret = client_secret
        self.scopes = list(scopes or [])
        self.audience = audience
        self.client_auth = client_auth
        if client_auth == ClientAuthMethod.basic:
            pair = f"{client_id}:{client_secret}".encode()
            self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
            register_secret(self._basic.removeprefix("Basic "))

    def build_token_request(self) -> httpx.Request:
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        if self.audience:
            form["audience"] = self.audience
        headers = {"Accept": "application/json"}
        if self.client_auth == ClientAuthMethod.basic:
            headers["Authorization"] = self._basic
        else:
            form["client_id"] = self._client_id
            form["client_secret"] = self._client_secret
        return httpx.Request("POST", self.token_url, data=form, headers=headers)


# --------------------------------------------------------------------------- from the spec


def secret_keys(spec: AuthSpec) -> list[str]:
    """The Secret keys the auth type reads (for messages)."""
    ref_key = spec.secret_ref.key if spec.secret_ref else None
    match spec.type:
        case AuthType.bearer:
            return [ref_key or "token"]
        case AuthType.api_key:
            return [ref_key or "apiKey"]
        case AuthType.basic:
            return [spec.username_key or "username", spec.password_key or "password"]
        case AuthType.oauth2_client_credentials:
            return [spec.client_id_key or "clientId", spec.client_secret_key or "clientSecret"]
    return []


def describe_credentials(spec: AuthSpec) -> str:
    """What a user should check when the API refuses the credentials."""
    if spec.type == AuthType.none:
        return "the source has auth.type none: the API may need credentials (set auth)"
    name = spec.secret_ref.name if spec.secret_ref else "?"
    keys = ", ".join(repr(k) for k in secret_keys(spec))
    text = f"check the {spec.type.value} credentials in Secret {name!r} (keys {keys})"
    if spec.type == AuthType.oauth2_client_credentials:
        text += " and auth.scopes/audience: the token may lack a permission"
    elif spec.type == AuthType.api_key:
        where = (
            f"query parameter {spec.query_param!r}"
            if spec.query_param
            else f"header {spec.header or DEFAULT_API_KEY_HEADER!r}"
        )
        text += f", and that the API expects the key in the {where}"
    return text


async def build_auth(spec: AuthSpec, secrets: SecretResolver, *, base_url: str | None = None) -> httpx.Auth:
    """The ``httpx.Auth`` of ``spec``, credentials read through ``secrets`` (SecretError when missing).

    ``base_url`` resolves a relative ``tokenUrl``.
    """
    if spec.type == AuthType.none:
        return NoAuth()
    if spec.secret_ref is None:
        raise ConfigError(f"auth.secretRef is required for auth.type {spec.type.value}")
    name = spec.secret_ref.name
    keys = secret_keys(spec)
    values = [await secrets.get(name, key) for key in keys]
    for value in values:
        register_secret(value)
    match spec.type:
        case AuthType.bearer:
            return BearerAuth(values[0])
        case AuthType.api_key:
            return ApiKeyAuth(values[0], header=spec.header, query_param=spec.query_param)
        case AuthType.basic:
            return BasicAuth(values[0], values[1])
        case AuthType.oauth2_client_credentials:
            if not spec.token_url:
                raise ConfigError("auth.tokenUrl is required for auth.type oauth2ClientCredentials")
            token_url = spec.token_url
            if not is_absolute(token_url):
                if base_url is None:
                    raise ConfigError(f"auth.tokenUrl {token_url!r} must be an absolute URL")
                token_url = join_url(base_url, token_url)
            return OAuth2ClientCredentials(
                token_url,
                values[0],
                values[1],
                scopes=spec.scopes,
                audience=spec.audience,
                client_auth=spec.client_auth_method or ClientAuthMethod.form,
            )
    raise ConfigError(f"auth.type {spec.type!r} is not supported")
