"""Build request URLs: join a source's baseUrl with an endpoint path, fill ``{param}`` placeholders,
and show URLs in messages without credentials."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from httpsync.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Query parameters whose values are credentials in many APIs; masked in every URL we show.
SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "access_token",
        "accesstoken",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "key",
        "password",
        "private_token",
        "secret",
        "sig",
        "signature",
        "token",
        "x-api-key",
    }
)
MASK = "***"


def _split(url: str, what: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"{what} {url!r} is not a valid URL: {e}") from None
    return parts


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, effective port) of an absolute URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme and parts.netloc)


def join_url(base_url: str, endpoint: str) -> str:
    """Join a baseUrl and an endpoint path, keeping the path inside the baseUrl.

    ``https://h/v1/tenant/12`` + ``/users`` gives ``https://h/v1/tenant/12/users``. Missing or extra
    slashes are tolerated (``//users`` is a path). An endpoint that is an absolute URL is used as is when it is on the
    baseUrl's host (scheme, host and port); another host is a :class:`ConfigError`.
    """
    base = _split(base_url, "baseUrl")
    if base.scheme.lower() not in _DEFAULT_PORTS or not base.netloc:
        raise ConfigError(f"baseUrl {base_url!r} must be an absolute http:// or https:// URL")
    endpoint = endpoint.strip()
    if not endpoint:
        raise ConfigError("the endpoint path is empty")
    if is_absolute(endpoint):
        target = _split(endpoint, "endpoint")
        if not same_origin(base_url, endpoint):
            raise ConfigError(
                f"endpoint {display_url(endpoint)!r} is on another host than baseUrl "
                f"{display_url(base_url)!r}: use a path, or an absolute URL on the same scheme, host and port"
            )
        return urlunsplit(target)
    # Anything else is a path, extra slashes included (``//users`` is not read as another host).
    path, _, query = endpoint.partition("?")
    joined_path = base.path.rstrip("/") + "/" + path.lstrip("/")
    joined_query = "&".join(q for q in (base.query, query) if q)
    return urlunsplit((base.scheme, base.netloc, joined_path, joined_query, ""))


def placeholder_names(template: str) -> list[str]:
    """Names of the ``{param}`` placeholders of ``template``, in order of first appearance."""
    seen: dict[str, None] = {}
    for name in _PLACEHOLDER.findall(template):
        seen.setdefault(name, None)
    return list(seen)


def format_param_value(value: Any) -> str:
    """A JSON scalar as it goes into a URL path: booleans ``true``/``false``, whole numbers without
    ``.0``. Objects, arrays and null are refused (ValueError)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"a {type(value).__name__} value cannot go into a URL path")


def fill_placeholders(template: str, values: Mapping[str, Any]) -> str:
    """Replace each ``{param}`` with its URL-encoded value (every reserved character is encoded,
    ``/`` included). A placeholder without a value is a :class:`ConfigError`."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise ConfigError(f"no value for the placeholder {{{name}}} in {template!r}")
        return quote(format_param_value(values[name]), safe="")

    return _PLACEHOLDER.sub(sub, template)


def merge_query(url: str, *layers: Mapping[str, str] | None, keep_url_params: bool = False) -> str:
    """Add query parameters to ``url``. Later layers win over earlier ones; the URL's own
    parameters are overridden by any layer, unless ``keep_url_params`` (then layers only add
    parameters the URL does not have)."""
    parts = urlsplit(url)
    own = parse_qsl(parts.query, keep_blank_values=True)
    merged: dict[str, str] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    if not merged:
        return url
    own_keys = {k for k, _ in own}
    if keep_url_params:
        extra = [(k, v) for k, v in merged.items() if k not in own_keys]
        pairs = own + extra
    else:
        pairs = [(k, v) for k, v in own if k not in merged] + list(merged.items())
    return urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote)))


def display_url(url: str, sensitive_params: Iterable[str] = ()) -> str:
    """``url`` fit for a message: a password in the userinfo and the values of credential query
    parameters (well-known names plus ``sensitive_params``) are replaced with ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        names = SENSITIVE_QUERY_PARAMS | {p.lower() for p in sensitive_params}
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in names for k, _ in pairs):
            query = "&".join(
                f"{quote(k, safe='')}={MASK}" if k.lower() in names else urlencode([(k, v)], quote_via=quote)
                for k, v in pairs
            )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
