"""One HTTP client per source: auth, TLS, timeouts, rate and concurrency limits, retries.

Every request of a source goes through :meth:`SourceClient.request`, which

- refuses URLs off the source's host (credentials go nowhere else) and asks the destination
  policy (``check_url``) about every request it sends, redirects and token requests included;
- sends it through the HTTP layer's retry loop (:class:`httpsync.http.retry.Retrier`): one
  concurrency slot and one rate-limit token per attempt (never across a backoff); connection
  errors, timeouts, 408, 429, rate-limited 403s and 5xx retried for every method with
  exponential backoff and full jitter, ``Retry-After`` and ``X-RateLimit-Reset`` honoured up to
  a cap (and holding every attempt of the source meanwhile);
- fails fast on other 4xx, and turns a 401/403 that survives the auth refresh into an
  :class:`AuthError` saying what to check.

Messages never contain credentials: URLs are shown through :func:`display_url` and text built
from responses or exceptions goes through :func:`redact`.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from httpsync.api.models import HttpSourceSpec
from httpsync.engine import jsoncodec
from httpsync.engine.auth import build_auth, describe_credentials
from httpsync.engine.types import SecretResolver
from httpsync.engine.url import display_url, join_url, merge_query, origin
from httpsync.errors import (
    AuthError,
    ConfigError,
    DestinationDeniedError,
    EngineError,
    HttpStatusError,
    ResponseFormatError,
    ResponseTooDeepError,
    ResponseTooLargeError,
)
from httpsync.http.auth import TokenAuth
from httpsync.http.limits import RequestLimiter
from httpsync.http.policy import check_url_resolved, policy_of
from httpsync.http.responses import body_start, status_text
from httpsync.http.retry import Retrier, RetryPolicy, ServerWait
from httpsync.http.transport import TransportPool, default_transport, too_large

TLS_HINT = "set tls.caBundle to the CA that signed it"


class RequestCounter(Protocol):
    """Anything with a ``requests`` count, such as :class:`httpsync.engine.fetch.FetchCounters`."""

    requests: int


def _ssl_verify(spec: HttpSourceSpec) -> bool | ssl.SSLContext:
    if spec.tls.insecure_skip_verify:
        return False
    if spec.tls.ca_bundle:
        return _ca_context(spec.tls.ca_bundle)
    return True


@functools.lru_cache(maxsize=64)
def _ca_context(bundle: str) -> ssl.SSLContext:
    """A context trusting ``bundle``, built once per bundle (not once per sync)."""
    try:
        return ssl.create_default_context(cadata=bundle)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(f"tls.caBundle is not a valid PEM certificate bundle: {e}") from None


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
        on_wait: Callable[[ServerWait], None] | None = None,
    ) -> None:
        self.spec = spec
        self.base_url = spec.base_url
        self.auth = auth
        self.requests = 0
        self.parent_cache: Any = None  # the runner's ParentCache for this sync, if any (see engine.fetch)
        # The worker pool that decodes and maps this source's pages (None: in this process; the
        # runner sets the shared pool, see httpsync.engine.workers).
        self.pool: Any = None
        self._check_url = check_url
        self._limiter = RequestLimiter(spec.max_concurrent_requests, spec.requests_per_second)
        retry = spec.retry
        self._retry = Retrier(
            RetryPolicy(
                max_retries=retry.max_retries,
                backoff=retry.backoff_seconds,
                max_backoff=retry.max_backoff_seconds,
                max_retry_after=retry.max_retry_after_seconds,
                timeout=spec.timeout_seconds,
            ),
            limiter=self._limiter,
            tls_hint=TLS_HINT,
            on_response=on_response,
            on_wait=on_wait,
        )
        self._sensitive = [spec.auth.query_param] if spec.auth.query_param else []
        if spec.auth.custom is not None:
            self._sensitive += list(spec.auth.custom.template.query_params)
        self._origins = {origin(spec.base_url)}
        if isinstance(auth, TokenAuth):
            self._origins.add(origin(auth.token_url))
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
        on_wait: Callable[[ServerWait], None] | None = None,
        transports: TransportPool | None = None,
    ) -> SourceClient:
        """Read the credentials and build the client. ``check_url`` (the destination policy) is
        asked about the baseUrl now and about every request later; it raises
        :class:`DestinationDeniedError`. ``on_response`` gets each attempt's status code, or None
        for a transport error (for metrics); ``on_wait`` each wait the API asks for (``Retry-After``),
        before it is waited (:class:`~httpsync.http.retry.ServerWait`). Without ``transport``,
        requests go through the HTTP layer's default transport
        (:func:`httpsync.http.transport.default_transport`: aiohttp, unless
        ``HTTPSYNC_HTTP_TRANSPORT=httpx`` asks for httpx's own)."""
        join_url(spec.base_url, "/")  # validates the baseUrl
        await check_url_resolved(check_url, display_url(spec.base_url))
        auth = await build_auth(spec.auth, secrets, base_url=spec.base_url)
        if isinstance(auth, TokenAuth):
            await check_url_resolved(check_url, display_url(auth.token_url))
        if transport is None and transports is not None:
            # The process's shared connections (the operator): the next sync reuses this one's.
            transport = transports.get(verify=_ssl_verify(spec), max_body_bytes=spec.max_response_bytes)
        if transport is None:
            # aiohttp's connection handling costs several times less CPU per request than httpcore's;
            # its resolver checks the addresses connected to against the destination policy.
            transport = default_transport(
                verify=_ssl_verify(spec),
                max_connections=spec.max_concurrent_requests + 1,
                policy=policy_of(check_url),
                max_body_bytes=spec.max_response_bytes,
            )
        return cls(spec, auth, check_url=check_url, on_response=on_response, transport=transport, on_wait=on_wait)

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
        await check_url_resolved(self._check_url, url)

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

        def count() -> None:
            self.requests += 1
            if counter is not None:
                counter.requests += 1

        try:
            response = await self._retry.send(
                f"{method} {shown}", lambda: self._http.request(method, full_url, **kwargs), on_attempt=count
            )
        except ResponseTooLargeError as e:
            raise ResponseTooLargeError(f"{method} {shown}: {e.message}") from None
        limit = self.spec.max_response_bytes
        if len(response.content) > limit:  # a transport that does not bound the body as it streams
            raise ResponseTooLargeError(f"{method} {shown}: {too_large(limit).message}")
        if response.status_code >= 300:
            raise self._status_error(method, shown, response)
        return response

    def _status_error(self, method: str, shown: str, response: httpx.Response) -> EngineError:
        status = response.status_code
        text = f"{method} {shown} returned {status_text(status)}: {body_start(response)}"
        if status in (401, 403):
            what = "refused the credentials" if status == 401 else "denied access"
            base = self.display(self.base_url)
            return AuthError(f"{text}. The source at {base} {what}: {describe_credentials(self.spec.auth)}")
        return HttpStatusError(text, stalled=status in (400, 404, 405, 410, 414, 422) or None)

    async def get_page(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        counter: RequestCounter | None = None,
    ) -> httpx.Response:
        """:meth:`request`, refusing an empty body (:class:`ResponseFormatError`); the body is not decoded."""
        response = await self.request(method, url, params=params, headers=headers, json_body=json_body, counter=counter)
        if not response.content.strip():
            ctype = response.headers.get("content-type", "none")
            raise ResponseFormatError(
                f"{method.upper()} {self._shown(response, url)} returned {status_text(response.status_code)} "
                f"with an empty body, not JSON (content-type {ctype})"
            )
        return response

    def _shown(self, response: httpx.Response, url: str) -> str:
        return self.display(str(response.request.url)) if response.request else self.display(url)

    def json_error(self, method: str, url: str, response: httpx.Response, detail: str) -> ResponseFormatError:
        """The error of a body that is not JSON (``detail``: the decoder's message)."""
        ctype = response.headers.get("content-type", "none")
        looks_json = "json" in ctype.lower()
        why = f"returned invalid JSON ({detail})" if looks_json else "did not return JSON"
        return ResponseFormatError(
            f"{method.upper()} {self._shown(response, url)} {why} (content-type {ctype}): {body_start(response)}"
        )

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
        """:meth:`get_page`, then the body parsed as JSON (:class:`ResponseFormatError` if it is not)."""
        response = await self.get_page(
            method, url, params=params, headers=headers, json_body=json_body, counter=counter
        )
        try:
            return jsoncodec.loads(response.content), response
        except jsoncodec.TooDeepError as e:
            raise ResponseTooDeepError(
                f"{method.upper()} {self._shown(response, url)} returned JSON httpsync does not read: {e}"
            ) from None
        except ValueError as e:
            raise self.json_error(method, url, response, str(e)) from None
