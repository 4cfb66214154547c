"""Authentication of requests to a source, as small ``httpx.Auth`` classes, built from the spec
by :func:`build_auth`.

Credentials are read from Secrets once and registered with the redactor, so they never show in
messages. OAuth2 client credentials derive from :class:`httpsync.http.auth.TokenAuth`: tokens
cached until shortly before they expire and refreshed once on a 401 (inside one attempt of the
client's retry loop), concurrent requests sharing one refresh. So does ``auth.type: custom``
(:class:`CustomAuth`): a login request of the user's design, whose JSON response jq expressions
turn into the headers, query parameters or body fields every request carries.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Generator
from typing import Any

import httpx

from httpsync.api.models import AuthSpec, AuthType, ClientAuthMethod, CustomAuthSpec, parse_duration
from httpsync.engine.jqutil import compile_jq, jq_error_line, json_type
from httpsync.engine.types import SecretResolver
from httpsync.engine.url import display_url, is_absolute, join_url
from httpsync.errors import ConfigError
from httpsync.http.auth import TokenAuth
from httpsync.http.redact import redact, register_secret

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


# --------------------------------------------------------------------------- custom login

_SECRET_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
# Keys of a login response whose string values are credentials even when no template uses them.
_SECRET_NAME = re.compile(r"token|secret|key|pass|session|cookie|auth|sig|jwt|bearer|credential", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(r"type|expir|scope|ttl", re.IGNORECASE)
NO_BODY_METHODS = ("GET", "HEAD")


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value (keys of objects excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def secret_refs(value: Any) -> list[str]:
    """The Secret keys ``${key}`` references in the strings of ``value``, in order, once each."""
    keys: list[str] = []
    for text in _strings(value):
        for m in _SECRET_REF.finditer(text):
            if m.group(0) != "$${" and m.group(1) not in keys:
                keys.append(m.group(1))
    return keys


def fill_secret_refs(value: Any, values: dict[str, str]) -> Any:
    """``value`` with each ``${key}`` replaced by ``values[key]`` (``$${`` gives ``${``)."""
    if isinstance(value, str):
        return _SECRET_REF.sub(lambda m: "${" if m.group(0) == "$${" else values[m.group(1)], value)
    if isinstance(value, dict):
        return {k: fill_secret_refs(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_secret_refs(v, values) for v in value]
    return value


_OCEAN_TEMPLATE = re.compile(r"\{\{\s*\.([^}]+?)\s*\}\}")


def jq_from_ocean_template(text: str) -> str:
    """The jq of one value of Ocean's ``customAuthRequestTemplate`` (``"Bearer {{.access_token}}"``):
    the text as jq string literals joined with ``+`` to each ``{{.path}}``'s value as a string. As in
    Ocean, a path the login response lacks is an error (naming the path), not an empty string. A
    value that is one ``{{.path}}`` keeps its JSON type (for body fields)."""
    parts = _OCEAN_TEMPLATE.split(text)
    if len(parts) == 1:
        return json.dumps(text)

    def value(path: str) -> str:
        expr = "." + path.strip().lstrip(".")
        return f"({expr} // error({json.dumps(f'the login response has no {expr}')}))"

    if len(parts) == 3 and not parts[0] and not parts[2]:
        return value(parts[1])
    pieces = [json.dumps(p) if i % 2 == 0 else f"({value(p)} | tostring)" for i, p in enumerate(parts) if p]
    return " + ".join(pieces)


def check_auth(spec: AuthSpec) -> None:
    """Check what needs no Secret and no network (the jq of auth.custom): a ConfigError or an
    InvalidJqError naming the field, before anything runs."""
    custom = spec.custom
    if spec.type != AuthType.custom or custom is None:
        return
    template = custom.template
    for group, exprs in (("headers", template.headers), ("queryParams", template.query_params),
                         ("body", template.body)):  # fmt: skip
        for name, expr in exprs.items():
            compile_jq(expr, f"auth.custom.template.{group}.{name}")
    if custom.expires_in_path:
        compile_jq(custom.expires_in_path, "auth.custom.expiresInPath")
    keys = _custom_secret_keys(custom)
    if "" in keys:
        raise ConfigError("auth.custom.request uses ${} without a key name: write ${key} (or $${ for ${)")
    if keys and spec.secret_ref is None:
        shown = ", ".join("${" + k + "}" for k in keys)
        raise ConfigError(f"auth.custom.request uses {shown}: set auth.secretRef to the Secret holding them")


def _custom_secret_keys(custom: CustomAuthSpec) -> list[str]:
    r = custom.request
    return secret_refs([r.url, r.headers, r.query_params, r.body, r.body_form])


class CustomAuth(TokenAuth):
    """``auth.type: custom``: the login request of ``auth.custom.request`` (``${key}`` references
    already filled in), its JSON response turned by the jq of ``auth.custom.template`` into the
    headers, query parameters and body fields of every request to the API.

    The login is kept for ``expiresInPath``'s seconds if it gives a number, else for
    ``reauthenticateInterval``, else until the API answers 401 (minus :class:`TokenAuth`'s margin),
    and done again once on a 401. Every value the templates build, and the login response's strings
    they contain or that sit under credential-like keys (token, secret, session ...), 8 characters or
    longer, are registered with the redactor.
    """

    REFUSED_HINT = "check auth.custom.request (its URL, method, body) and the values of its Secret"
    requires_request_body = True  # body fields are merged into it

    def __init__(self, login_url: str, spec: CustomAuthSpec, secret_values: dict[str, str]) -> None:
        super().__init__(login_url, endpoint=f"the login endpoint {display_url(login_url)}")
        request = fill_secret_refs(spec.request.model_dump(), secret_values)
        self._method = spec.request.method.value
        self._headers: dict[str, str] = request["headers"]
        self._params: dict[str, str] = request["query_params"]
        self._body: dict[str, Any] | None = request["body"]
        self._form: dict[str, str] | None = request["body_form"]
        template = spec.template
        self._templates = [
            (group, name, expr, compile_jq(expr, f"auth.custom.template.{group}.{name}"))
            for group, exprs in (
                ("headers", template.headers),
                ("queryParams", template.query_params),
                ("body", template.body),
            )
            for name, expr in exprs.items()
        ]
        self._expires_path = spec.expires_in_path
        self._expires_prog = (
            compile_jq(spec.expires_in_path, "auth.custom.expiresInPath") if spec.expires_in_path else None
        )
        if spec.reauthenticate_interval:
            self.DEFAULT_LIFETIME = parse_duration(spec.reauthenticate_interval)

    def build_token_request(self) -> httpx.Request:
        headers = {"Accept": "application/json", **self._headers}
        if self._form is not None:
            return httpx.Request(self._method, self.token_url, params=self._params, headers=headers, data=self._form)
        if self._body is not None:
            return httpx.Request(self._method, self.token_url, params=self._params, headers=headers, json=self._body)
        return httpx.Request(self._method, self.token_url, params=self._params, headers=headers)

    def parse_answer(self, data: Any) -> tuple[Any, Any]:
        for text in _named_secrets(data):  # first: a jq error below may quote them
            register_secret(text)
        credential: dict[str, dict[str, Any]] = {"headers": {}, "queryParams": {}, "body": {}}
        for group, name, expr, prog in self._templates:
            value = self._evaluate(prog, data, f"auth.custom.template.{group}.{name} {expr!r}")
            if group != "body":
                if isinstance(value, (dict, list)) or value is None:
                    raise self._error(
                        f"auth.custom.template.{group}.{name} {expr!r} gave {json_type(value)} from the response of "
                        f"{self.endpoint}, not a string{_keys(data)}",
                        retryable=False,
                    )
                value = value if isinstance(value, str) else json.dumps(value)
            credential[group][name] = value
        used = [s for s in _strings(credential) if s]
        for text in used:
            register_secret(text)
        for text in _response_secrets(data):
            if any(text in u for u in used):
                register_secret(text)
        expires_in = None
        if self._expires_prog is not None:
            expires_in = self._evaluate(self._expires_prog, data, f"auth.custom.expiresInPath {self._expires_path!r}")
            if isinstance(expires_in, str):
                try:
                    expires_in = float(expires_in)
                except ValueError:
                    expires_in = None
            if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
                expires_in = None  # reauthenticateInterval, if any, applies
        return credential, expires_in

    def _evaluate(self, prog: Any, data: Any, label: str) -> Any:
        try:
            return prog.input_value(data).first()
        except StopIteration:
            return None
        except ValueError as e:
            raise self._error(
                f"{label} failed on the response of {self.endpoint}: {redact(jq_error_line(e))}{_keys(data)}",
                retryable=False,
            ) from None

    def apply(self, request: httpx.Request, credential: Any) -> httpx.Request:
        for name, value in credential["headers"].items():
            request.headers[name] = value
        if credential["queryParams"]:
            request.url = request.url.copy_merge_params(credential["queryParams"])
        fields = credential["body"]
        if not fields or (request.method in NO_BODY_METHODS and not request.content):
            return request
        try:
            body = json.loads(request.content) if request.content else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ConfigError(
                f"auth.custom.template.body: the request {request.method} {display_url(str(request.url))} has a "
                "body that is not a JSON object, so the login's fields cannot be merged into it"
            )
        content = json.dumps({**body, **fields}, separators=(",", ":")).encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "content-type")}
        headers["Content-Type"] = "application/json"
        return httpx.Request(
            request.method, request.url, headers=headers, content=content, extensions=request.extensions
        )


def _keys(data: Any) -> str:
    if not isinstance(data, dict):
        return f" (the response is {json_type(data)})"
    return f" (response keys: {', '.join(redact(str(k)) for k in list(data)[:20]) or 'none'})"


def _response_secrets(data: Any) -> list[str]:
    """Strings of a login response long enough to be credentials (not ``Bearer``)."""
    return [s for s in _strings(data) if len(s) >= 8]


def _named_secrets(data: Any) -> set[str]:
    """Strings of ``data`` under a credential-like key, at any depth, that look like credentials (8
    characters or more: not ``token_type: Bearer``)."""
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            if _SECRET_NAME.search(str(k)) and not _NOT_SECRET_NAME.search(str(k)):
                out.update(s for s in _strings(v) if len(s) >= 8)
            else:
                out |= _named_secrets(v)
    elif isinstance(data, list):
        for v in data:
            out |= _named_secrets(v)
    return out


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
        case AuthType.custom:
            return _custom_secret_keys(spec.custom) if spec.custom else []
    return []


def describe_credentials(spec: AuthSpec) -> str:
    """What a user should check when the API refuses the credentials."""
    if spec.type == AuthType.none:
        return "the source has auth.type none: the API may need credentials (set auth)"
    name = spec.secret_ref.name if spec.secret_ref else "?"
    keys = ", ".join(repr(k) for k in secret_keys(spec))
    if spec.type == AuthType.custom:
        assert spec.custom is not None
        text = f"check the login of auth.custom.request ({spec.custom.request.url}) and auth.custom.template"
        return text + (f", and the credentials in Secret {name!r} (keys {keys})" if keys else "")
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
    if spec.type == AuthType.custom:
        return await _build_custom(spec, secrets, base_url)
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


async def _build_custom(spec: AuthSpec, secrets: SecretResolver, base_url: str | None) -> CustomAuth:
    if spec.custom is None:
        raise ConfigError("auth.custom is required for auth.type custom")
    check_auth(spec)
    values: dict[str, str] = {}
    for key in _custom_secret_keys(spec.custom):
        assert spec.secret_ref is not None  # check_auth
        values[key] = await secrets.get(spec.secret_ref.name, key)
        register_secret(values[key])
    url = fill_secret_refs(spec.custom.request.url, values)
    if not is_absolute(url):
        if base_url is None:
            raise ConfigError(f"auth.custom.request.url {url!r} must be an absolute URL")
        url = join_url(base_url, url)
    elif not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"auth.custom.request.url {display_url(url)!r} must be an http:// or https:// URL")
    return CustomAuth(url, spec.custom, values)
