"""One HTTP client per source: auth, TLS, timeouts, rate and concurrency limits, retries.

Every request of a source goes through :meth:`SourceClient.request`, which

- refuses URLs off the source's host (credentials go nowhere else) and asks the destination
  policy (``check_url``) about every request it sends, redirects and token requests included;
- takes one concurrency slot and one rate-limit token per attempt (never across a backoff);
- retries connection errors, timeouts, 408, 429 and 5xx for every method, with exponential
  backoff and full jitter, honouring ``Retry-After`` and ``X-RateLimit-Reset`` up to a cap;
- fails fast on other 4xx, and turns a 401/403 that survives the auth refresh into an
  :class:`AuthError` saying what to check.

Messages never contain credentials: URLs are shown through :func:`display_url` and text built
from responses or exceptions goes through :func:`redact`.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from httpsync.api.models import HttpSourceSpec
from httpsync.engine import jsoncodec
from httpsync.engine.auth import OAuth2ClientCredentials, TokenEndpointError, build_auth, describe_credentials
from httpsync.engine.types import SecretResolver
from httpsync.engine.url import display_url, join_url, merge_query, origin
from httpsync.errors import (
    AuthError,
    ConfigError,
    ConnectionFailedError,
    DestinationDeniedError,
    EngineError,
    HttpStatusError,
    ResponseFormatError,
    TimeoutFailedError,
)
from httpsync.http.limits import RequestLimiter
from httpsync.http.redact import redact
from httpsync.http.transport import AiohttpTransport

BODY_START = 200
_RETRY_STATUSES = frozenset({408, 429})
# Transport errors worth another attempt (not: invalid URL, unsupported protocol, local misuse).
_RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


@dataclass(slots=True)
class _Failure:
    """A failed attempt worth retrying: the error to raise if it was the last one, and the wait."""

    error_type: type[EngineError]
    head: str  # "returned 503 Service Unavailable", "timed out after 30 s", "failed"
    detail: str
    delay: float
    reason: str | None = None
    stalled: bool | None = None


class RequestCounter(Protocol):
    """Anything with a ``requests`` count, such as :class:`httpsync.engine.fetch.FetchCounters`."""

    requests: int


def body_start(response: httpx.Response, limit: int = BODY_START) -> str:
    """The first ``limit`` characters of a response body, whitespace collapsed and redacted."""
    text = response.content[: limit * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(text) or "(empty body)"


def status_text(status: int) -> str:
    phrase = httpx.codes.get_reason_phrase(status)
    return f"{status} {phrase}" if phrase else str(status)


def _parse_delay(value: str, now: float) -> float | None:
    """Seconds to wait from a header value: delta seconds, epoch seconds (or milliseconds), or an
    HTTP-date."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    if number != number or number < 0:  # NaN or negative
        return None
    if number > 1e12:  # epoch milliseconds
        number /= 1000.0
    if number > 1e9:  # epoch seconds
        return max(0.0, number - now)
    return number


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap, base * 2**attempt))


def retry_delay(
    attempt: int, response: httpx.Response | None, *, base: float, cap: float, max_retry_after: float
) -> float:
    """How long to wait before retry ``attempt``: what the response asks for (capped), else backoff."""
    if response is not None:
        server = retry_after_seconds(response.headers)
        if server is not None:
            return min(server, max_retry_after)
    return backoff_delay(attempt, base, cap)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: ``Retry-After`` (seconds or HTTP-date), else ``X-RateLimit-Reset``
    / ``RateLimit-Reset`` (epoch or delta seconds). None when absent or unreadable."""
    now = time.time() if now is None else now
    for name in ("retry-after", "x-ratelimit-reset", "ratelimit-reset"):
        value = headers.get(name)
        if value:
            delay = _parse_delay(value, now)
            if delay is not None:
                return delay
    return None


def _cert_verify_error(exc: BaseException) -> str | None:
    """The verification message of a certificate error in ``exc``'s chain, if any: no retry fixes it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return redact(current.verify_message or str(current))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _ssl_verify(spec: HttpSourceSpec) -> bool | ssl.SSLContext:
    if spec.tls.insecure_skip_verify:
        return False
    if spec.tls.ca_bundle:
        try:
            return ssl.create_default_context(cadata=spec.tls.ca_bundle)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"tls.caBundle is not a valid PEM certificate bundle: {e}") from None
    return True


class SourceClient:
    """The HTTP client of one source. Create it with :meth:`create`; close it with :meth:`aclose`."""

    def __init__(
        self,
        spec: HttpSourceSpec,
        auth: httpx.Auth,
        *,
        check_url: Callable[[str], None] | None = None,
        on_response: Callable[[int | None], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self.base_url = spec.base_url
        self.auth = auth
        self.requests = 0
        self._check_url = check_url
        self._on_response = on_response
        self._limiter = RequestLimiter(spec.max_concurrent_requests, spec.requests_per_second)
        self._sensitive = [spec.auth.query_param] if spec.auth.query_param else []
        self._origins = {origin(spec.base_url)}
        if isinstance(auth, OAuth2ClientCredentials):
            self._origins.add(origin(auth.token_url))
        self._timeout = spec.timeout_seconds
        headers = {"User-Agent": "httpsync", "Accept": "application/json"}
        headers.update(spec.headers)
        self._http = httpx.AsyncClient(
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(spec.timeout_seconds),
            verify=_ssl_verify(spec),
            follow_redirects=True,
            limits=httpx.Limits(
                max_connections=spec.max_concurrent_requests + 1,
                max_keepalive_connections=spec.max_concurrent_requests + 1,
            ),
            event_hooks={"request": [self._before_send]},
            transport=transport,
        )

    @classmethod
    async def create(
        cls,
        spec: HttpSourceSpec,
        secrets: SecretResolver,
        *,
        check_url: Callable[[str], None] | None = None,
        on_response: Callable[[int | None], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> SourceClient:
        """Read the credentials and build the client. ``check_url`` (the destination policy) is
        asked about the baseUrl now and about every request later; it raises
        :class:`DestinationDeniedError`. ``on_response`` gets each attempt's status code, or None
        for a transport error (for metrics). Without ``transport``, requests go through
        :class:`AiohttpTransport`, unless the environment variable ``HTTPSYNC_HTTP_TRANSPORT=httpx``
        asks for httpx's own transport."""
        join_url(spec.base_url, "/")  # validates the baseUrl
        if check_url is not None:
            check_url(display_url(spec.base_url))
        if transport is None and os.environ.get("HTTPSYNC_HTTP_TRANSPORT", "").strip().lower() != "httpx":
            # aiohttp's connection handling costs several times less CPU per request than httpcore's.
            transport = AiohttpTransport(verify=_ssl_verify(spec), max_connections=spec.max_concurrent_requests + 1)
        auth = await build_auth(spec.auth, secrets, base_url=spec.base_url)
        return cls(spec, auth, check_url=check_url, on_response=on_response, transport=transport)

    async def __aenter__(self) -> SourceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- helpers

    def url_for(self, endpoint: str) -> str:
        """The absolute URL of an endpoint path of this source."""
        return join_url(self.spec.base_url, endpoint)

    def display(self, url: str) -> str:
        """``url`` without credentials, for messages."""
        return display_url(url, self._sensitive)

    async def _before_send(self, request: httpx.Request) -> None:
        url = self.display(str(request.url))
        if origin(str(request.url)) not in self._origins:
            raise DestinationDeniedError(
                f"refusing to send a request to {url}: it is not on the host of baseUrl "
                f"{self.display(self.base_url)} (a redirect to another host?)"
            )
        if self._check_url is not None:
            self._check_url(url)

    def _backoff(self, attempt: int) -> float:
        retry = self.spec.retry
        return backoff_delay(attempt, retry.backoff_seconds, retry.max_backoff_seconds)

    def _server_delay(self, response: httpx.Response) -> float | None:
        delay = retry_after_seconds(response.headers)
        if delay is None:
            return None
        return min(delay, self.spec.retry.max_retry_after_seconds)

    @staticmethod
    def _is_rate_limited_403(response: httpx.Response) -> bool:
        return response.status_code == 403 and response.headers.get("x-ratelimit-remaining", "").strip() == "0"

    def _notify(self, status: int | None) -> None:
        if self._on_response is not None:
            self._on_response(status)

    # -- requests

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        counter: RequestCounter | None = None,
    ) -> httpx.Response:
        """Send one request (with retries) and return its successful (2xx) response, body read.

        ``url`` is absolute (see :meth:`url_for`); its own query parameters are kept, the source's
        queryParams are added where the URL does not have them, and ``params`` override both.
        ``headers`` override the source's headers. ``counter.requests`` grows by one per attempt.
        """
        method = method.upper()
        full_url = merge_query(merge_query(url, self.spec.query_params, keep_url_params=True), params)
        shown = self.display(full_url)
        if not full_url.lower().startswith(("http://", "https://")) or origin(full_url) not in self._origins:
            base = self.display(self.base_url)
            raise DestinationDeniedError(f"refusing to send {method} {shown}: it is not on the host of baseUrl {base}")
        if self._check_url is not None:
            self._check_url(shown)
        kwargs: dict[str, Any] = {"headers": dict(headers) if headers else None}
        if json_body is not None:
            kwargs["json"] = json_body
        attempts = 1 + self.spec.retry.max_retries
        failure: _Failure | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(failure.delay if failure else 0.0)
            response, failure = await self._attempt(method, full_url, shown, kwargs, counter, attempt)
            if response is not None:
                return response
        assert failure is not None
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        detail = f": {failure.detail}" if failure.detail else ""
        message = f"{method} {shown} {failure.head}{tries}{detail}"
        raise failure.error_type(message, reason=failure.reason, stalled=failure.stalled)

    async def _attempt(
        self,
        method: str,
        url: str,
        shown: str,
        kwargs: dict[str, Any],
        counter: RequestCounter | None,
        attempt: int,
    ) -> tuple[httpx.Response | None, _Failure | None]:
        """One attempt: the successful response, or what failed and how long to wait before the next
        attempt. Errors that no retry can fix are raised."""
        async with self._limiter.slot():
            self.requests += 1
            if counter is not None:
                counter.requests += 1
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._http.request(method, url, **kwargs)
            except TokenEndpointError as e:
                if not e.retryable:
                    raise
                delay = self._backoff(attempt)
                return None, _Failure(AuthError, "failed", e.message, delay, e.reason, stalled=False)
            except (TimeoutError, httpx.TimeoutException):
                self._notify(None)
                head = f"timed out after {self._timeout:g} s"
                return None, _Failure(TimeoutFailedError, head, "", self._backoff(attempt))
            except httpx.ConnectError as e:
                self._notify(None)
                if (verify_error := _cert_verify_error(e)) is not None:
                    raise ConnectionFailedError(
                        f"{method} {shown} failed: the server's TLS certificate was not accepted "
                        f"({verify_error}); set tls.caBundle to the CA that signed it",
                        reason="TlsVerifyFailed",
                        stalled=True,
                    ) from None
                detail = f"{type(e).__name__}: {redact(str(e)) or 'no detail'}"
                return None, _Failure(ConnectionFailedError, "failed", detail, self._backoff(attempt))
            except _RETRY_EXCEPTIONS as e:
                self._notify(None)
                detail = f"{type(e).__name__}: {redact(str(e)) or 'no detail'}"
                return None, _Failure(ConnectionFailedError, "failed", detail, self._backoff(attempt))
            except httpx.TooManyRedirects:
                self._notify(None)
                raise HttpStatusError(f"{method} {shown} redirected too many times") from None
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
                raise ConfigError(f"{method} {shown}: invalid URL: {redact(str(e))}") from None
            except httpx.HTTPError as e:
                self._notify(None)
                raise ConnectionFailedError(f"{method} {shown} failed: {type(e).__name__}: {redact(str(e))}") from None
        status = response.status_code
        self._notify(status)
        if status < 300:
            return response, None
        rate_limited = status == 429 or self._is_rate_limited_403(response)
        if not (rate_limited or status in _RETRY_STATUSES or status >= 500):
            raise self._status_error(method, shown, response)
        server_delay = self._server_delay(response)
        delay = server_delay if server_delay is not None else self._backoff(attempt)
        reason = "RateLimited" if rate_limited else None
        return None, _Failure(HttpStatusError, f"returned {status_text(status)}", body_start(response), delay, reason)

    def _status_error(self, method: str, shown: str, response: httpx.Response) -> EngineError:
        status = response.status_code
        text = f"{method} {shown} returned {status_text(status)}: {body_start(response)}"
        if status in (401, 403):
            what = "refused the credentials" if status == 401 else "denied access"
            base = self.display(self.base_url)
            return AuthError(f"{text}. The source at {base} {what}: {describe_credentials(self.spec.auth)}")
        return HttpStatusError(text, stalled=status in (400, 404, 405, 410, 414, 422) or None)

    async def get_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        counter: RequestCounter | None = None,
    ) -> tuple[Any, httpx.Response]:
        """:meth:`request`, then the body parsed as JSON (:class:`ResponseFormatError` if it is not)."""
        response = await self.request(method, url, params=params, headers=headers, json_body=json_body, counter=counter)
        shown = self.display(str(response.request.url)) if response.request else self.display(url)
        method = method.upper()
        ctype = response.headers.get("content-type", "none")
        if not response.content.strip():
            raise ResponseFormatError(
                f"{method} {shown} returned {status_text(response.status_code)} with an empty body, not JSON "
                f"(content-type {ctype})"
            )
        try:
            return jsoncodec.loads(response.content), response
        except ValueError as e:
            looks_json = "json" in ctype.lower()
            why = f"returned invalid JSON ({e})" if looks_json else "did not return JSON"
            raise ResponseFormatError(
                f"{method} {shown} {why} (content-type {ctype}): {body_start(response)}"
            ) from None
