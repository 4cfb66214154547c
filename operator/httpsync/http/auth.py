"""Token auth: an ``httpx.Auth`` that gets an access token from a token endpoint and sends it.

:class:`TokenAuth` is the base of the OAuth2 client credentials grant of the sources
(:class:`httpsync.engine.auth.OAuth2ClientCredentials`) and of Port's access tokens
(:class:`httpsync.sinks.port.PortTokenAuth`). A subclass says how to ask for a token
(:meth:`TokenAuth.build_token_request`) and names the fields of the answer, or reads the answer
itself (:meth:`TokenAuth.parse_answer`) and puts its credential on requests its own way
(:meth:`TokenAuth.apply`; the engine's custom login flows do); the base

- caches the token until shortly before it expires (its lifetime minus 10%, at most
  ``MARGIN_SECONDS``), so it is renewed before the API refuses it;
- fetches one token at a time: concurrent requests wait for the one fetch under a lock;
- on a 401 fetches one new token and resends the request once, unless another request already
  renewed the token since this one was sent (``generation``): then it only resends;
- registers every token with the redactor, and reports a failing token endpoint as a
  :class:`TokenEndpointError` whose ``retryable`` tells the retry loop whether to try again.

Token requests are yielded by the flow, so the client sends them like any request: same
transport, timeouts, event hooks (destination checks) and, around the whole flow, the same retries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import httpx

from httpsync.errors import AuthError
from httpsync.http.redact import register_secret
from httpsync.http.responses import body_start, is_retryable_status, retry_after_seconds, status_text


class TokenEndpointError(AuthError):
    """The token endpoint failed. ``retryable`` when a later attempt may work (408, 429, 5xx...);
    ``retry_after``: the wait it asked for, if any."""

    def __init__(
        self, message: str, *, retryable: bool, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason, stalled=not retryable)
        self.retryable = retryable
        self.retry_after = retry_after


class TokenAuth(httpx.Auth):
    """An access token from a token endpoint, cached and renewed (see the module docstring).

    ``token_url`` is where tokens come from; ``endpoint`` names it in messages ("the OAuth2 token
    endpoint https://..."), credentials masked.
    """

    MARGIN_SECONDS = 30.0
    MARGIN_RATIO = 0.1
    DEFAULT_LIFETIME: float | None = None  # seconds a token without (valid) expiry is used; None: until refused
    TOKEN_FIELD = "access_token"
    EXPIRES_FIELD = "expires_in"
    TYPE_FIELD: str | None = None  # the answer's field with the Authorization scheme; None: always Bearer
    ERROR_REASON: str | None = None  # the reason of its errors; None: AuthError's
    REFUSED_HINT = ""  # what to check when the endpoint refuses, appended to the message

    def __init__(self, token_url: str, *, endpoint: str) -> None:
        self.token_url = token_url
        self.endpoint = endpoint
        self._lock = asyncio.Lock()
        self._credential: Any = None  # what requests carry (the Authorization value by default)
        self._expires_at: float | None = None
        self.generation = 0  # grows with each new token
        self.token_requests = 0

    # -- what a subclass says

    def build_token_request(self) -> httpx.Request:
        raise NotImplementedError

    def failure_message(self, response: httpx.Response, retryable: bool) -> str:
        """The message of a token endpoint answering ``response`` (not 2xx)."""
        text = f"{self.endpoint} returned {status_text(response.status_code)}: {body_start(response)}"
        if not retryable and self.REFUSED_HINT:
            text += f"; {self.REFUSED_HINT}"
        return text

    # -- the token cache

    def _current(self) -> str | None:
        if self._credential is None:
            return None
        if self._expires_at is not None and time.monotonic() >= self._expires_at:
            return None
        return self._credential

    def invalidate(self) -> None:
        self._credential = None

    def _token_request(self) -> httpx.Request:
        self.token_requests += 1
        return self.build_token_request()

    def _error(self, message: str, *, retryable: bool, retry_after: float | None = None) -> TokenEndpointError:
        return TokenEndpointError(message, retryable=retryable, reason=self.ERROR_REASON, retry_after=retry_after)

    async def _accept(self, response: httpx.Response) -> None:
        """Store the token of the endpoint's ``response``, or raise :class:`TokenEndpointError`."""
        await response.aread()
        if not response.is_success:
            retryable = is_retryable_status(response)
            retry_after = retry_after_seconds(response.headers) if retryable else None
            raise self._error(self.failure_message(response, retryable), retryable=retryable, retry_after=retry_after)
        try:
            data: Any = json.loads(response.content)
        except ValueError:
            ctype = response.headers.get("content-type", "none")
            raise self._error(
                f"{self.endpoint} did not return JSON (content-type {ctype}): {body_start(response)}", retryable=False
            ) from None
        credential, expires_in = self.parse_answer(data)
        self._credential = credential
        lifetime = self._lifetime(expires_in)
        self._expires_at = None if lifetime is None else time.monotonic() + lifetime
        self.generation += 1

    def parse_answer(self, data: Any) -> tuple[Any, Any]:
        """The credential of a token endpoint's JSON answer and its lifetime in seconds (anything
        :meth:`_lifetime` reads; None: none given), or :class:`TokenEndpointError`. By default the
        credential is the ``Authorization`` value built from ``TOKEN_FIELD`` (and ``TYPE_FIELD``)."""
        token = data.get(self.TOKEN_FIELD) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            keys = ", ".join(sorted(map(str, data))) if isinstance(data, dict) else type(data).__name__
            raise self._error(f"{self.endpoint} returned no {self.TOKEN_FIELD} (got: {keys})", retryable=False)
        register_secret(token)
        scheme = data.get(self.TYPE_FIELD) if self.TYPE_FIELD else None
        authorization = f"{scheme if isinstance(scheme, str) and scheme else 'Bearer'} {token}"
        return authorization, data.get(self.EXPIRES_FIELD)

    def apply(self, request: httpx.Request, credential: Any) -> httpx.Request:
        """``request`` carrying ``credential`` (by default: its ``Authorization`` header). May return
        a new request (one with another body)."""
        request.headers["Authorization"] = credential
        return request

    def _lifetime(self, expires_in: Any) -> float | None:
        """Seconds to use a token: its lifetime minus the margin; None: until refused."""
        try:
            lifetime: float | None = float(expires_in)
        except (TypeError, ValueError):
            lifetime = None
        if lifetime is None or not lifetime > 0:
            lifetime = self.DEFAULT_LIFETIME
            if lifetime is None:
                return None
        return lifetime - min(self.MARGIN_SECONDS, lifetime * self.MARGIN_RATIO)

    async def authorization(self, send: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> Any:
        """The current credential (by default the ``Authorization`` value), a token fetched first
        through ``send`` if none is current (outside a request's flow, e.g. to check the credentials
        early)."""
        current = self._current()
        if current is None:
            async with self._lock:
                current = self._current()
                if current is None:
                    await self._accept(await send(self._token_request()))
                    current = self._credential
        assert current is not None
        return current

    # -- the flow

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        credential = self._current()
        if credential is None:
            async with self._lock:
                credential = self._current()
                if credential is None:
                    token_response = yield self._token_request()
                    await self._accept(token_response)
                    credential = self._credential
        generation = self.generation
        assert credential is not None
        response = yield self.apply(request, credential)
        if response.status_code != 401:
            return
        async with self._lock:
            if self.generation == generation:  # nobody renewed the token since this request was sent
                token_response = yield self._token_request()
                await self._accept(token_response)
            credential = self._credential
        assert credential is not None
        yield self.apply(request, credential)
