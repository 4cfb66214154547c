"""The one retry loop of every outbound request (the sources' client and the remote sinks).

:class:`Retrier` sends one request with up to ``1 + max_retries`` attempts:

- each attempt takes a slot of the :class:`~httpsync.http.limits.RequestLimiter` (if any; never
  held across a backoff) and runs under the per-attempt timeout;
- a response whose status a retry can fix (408, 429, 5xx, and a 403 that says it is rate limited:
  ``X-RateLimit-Remaining: 0``) is retried after what ``Retry-After`` / ``X-RateLimit-Reset``
  asks for, capped at ``max_retry_after``, else after exponential backoff with full jitter; a
  server's wait also pauses the limiter, so no other attempt of the same client starts meanwhile;
- a transport exception is translated through one table, :data:`TRANSPORT_ERRORS` (exception type
  -> retryable?, what the message says, which error), not a chain of ``except`` clauses;
- a token endpoint failure (:class:`~httpsync.http.auth.TokenEndpointError`) raised by the auth
  flow is retried when it is transient, raised as it is otherwise;
- any other response (2xx, 3xx, a 4xx no retry fixes) is returned: what it means is the caller's.

Retries exhausted raise the error of the last failure: ``GET https://... returned 503 Service
Unavailable (6 attempts): <body start>``. The caller decides the error class: the table's
:class:`~httpsync.errors.EngineError` subclasses for the source client, or one class for
everything (the sinks' :class:`~httpsync.errors.SinkError`), which then keeps the message and
``stalled`` of the failure and the reason of the class (an error raised by the auth flow or a hook
keeps its own reason).

Messages never contain secrets: ``shown`` (the request as the caller shows it, its URL without
credentials) is the caller's, and text from responses and exceptions is redacted.

A wait the server asks for is told: logged (a warning when it asks for more than
``max_retry_after``: "waiting for the API's rate limit until <time>") and given to ``on_wait`` as a
:class:`ServerWait`, so the operator can say so in a Reconciling message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from httpsync.errors import (
    AuthError,
    ConfigError,
    ConnectionFailedError,
    EngineError,
    HttpStatusError,
    TimeoutFailedError,
)
from httpsync.http.auth import TokenEndpointError
from httpsync.http.limits import RequestLimiter
from httpsync.http.redact import redact
from httpsync.http.responses import (
    body_start,
    exception_text,
    is_rate_limited,
    is_retryable_status,
    retry_after_seconds,
    status_text,
)

log = logging.getLogger("httpsync.http")

LOG_WAITS_FROM = 1.0  # server waits shorter than this (seconds) are not logged

# --------------------------------------------------------------------------- how long


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(cap, base * 2**attempt))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long: ``1 + max_retries`` attempts of at most ``timeout`` seconds each,
    backoff from ``backoff`` doubling up to ``max_backoff``, server waits honoured up to
    ``max_retry_after``."""

    max_retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    timeout: float | None = 30.0

    @property
    def attempts(self) -> int:
        return 1 + max(0, self.max_retries)

    def server_delay(self, asked: float | None) -> float | None:
        """What the server asked for, capped; None if it asked nothing."""
        return None if asked is None else min(asked, self.max_retry_after)

    def delay(self, attempt: int, asked: float | None = None) -> float:
        """The wait before the attempt after ``attempt`` (0-based): the server's, else backoff."""
        server = self.server_delay(asked)
        return server if server is not None else backoff_delay(attempt, self.backoff, self.max_backoff)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ServerWait:
    """A wait a server asked for (``Retry-After``, ``X-RateLimit-Reset``), about to be waited.

    ``request``: the request as shown in messages; ``asked``: the seconds it asked for;
    ``seconds``: the seconds waited (``asked`` capped at ``max_retry_after``); ``until`` and
    ``asked_until``: when the next attempt starts and when the server said it could (epoch seconds).
    """

    request: str
    status: int | None
    asked: float
    seconds: float
    until: float
    asked_until: float

    @property
    def capped(self) -> bool:
        return self.asked > self.seconds

    @property
    def message(self) -> str:
        """``waiting for the API's rate limit until 2026-12-08T00:05:00Z`` and why."""
        status = f" returned {status_text(self.status)}:" if self.status else ":"
        text = f"{self.request}{status} waiting for the API's rate limit until {_clock(self.until)}"
        if self.capped:
            text += (
                f" (it asked to wait {self.asked:g} s, until {_clock(self.asked_until)}; the wait is capped at "
                f"{self.seconds:g} s by retry.maxRetryAfterSeconds, then the request is retried)"
            )
        return text


# --------------------------------------------------------------------------- transport exceptions


def cert_verify_error(exc: BaseException) -> str | None:
    """The verification message of a certificate error in ``exc``'s chain, if any: no retry fixes it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return redact(current.verify_message or str(current))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_detail(exc: BaseException) -> str:
    return f"the server's TLS certificate was not accepted ({cert_verify_error(exc)})"


def _no_detail(exc: BaseException) -> str:
    return ""


def _invalid_url(exc: BaseException) -> str:
    return f"invalid URL: {redact(str(exc))}"


@dataclass(frozen=True, slots=True)
class TransportRule:
    """What an exception raised while sending means: ``error`` with ``{shown} {head}: {detail}``,
    and whether another attempt may succeed. ``when`` narrows the match; ``sent`` is False when the
    request never left (no response is reported for it); ``tls`` adds the caller's TLS hint."""

    exceptions: type[BaseException] | tuple[type[BaseException], ...]
    retryable: bool
    error: type[EngineError]
    head: str = "failed"
    detail: Callable[[BaseException], str] = exception_text
    when: Callable[[BaseException], object] | None = None
    reason: str | None = None
    stalled: bool | None = None
    sent: bool = True
    tls: bool = False


# The first matching row wins. Everything else (programming errors...) propagates untouched.
TRANSPORT_ERRORS: tuple[TransportRule, ...] = (
    # asyncio.timeout around the attempt, or httpx's own connect/read/write/pool timeouts
    TransportRule((TimeoutError, httpx.TimeoutException), True, TimeoutFailedError, "timed out after {timeout:g} s",
                  detail=_no_detail),
    # an untrusted certificate: only a human fixes that
    TransportRule(httpx.ConnectError, False, ConnectionFailedError, when=cert_verify_error, detail=_tls_detail,
                  reason="TlsVerifyFailed", stalled=True, tls=True),
    # refused or reset connections, DNS, broken responses, an unreachable or refusing proxy
    TransportRule((httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError), True, ConnectionFailedError),
    TransportRule(httpx.TooManyRedirects, False, HttpStatusError, "redirected too many times", detail=_no_detail),
    TransportRule((httpx.InvalidURL, httpx.UnsupportedProtocol), False, ConfigError, detail=_invalid_url, sent=False),
    TransportRule(httpx.HTTPError, False, ConnectionFailedError),
)  # fmt: skip


def transport_rule(exc: BaseException) -> TransportRule | None:
    """The row of :data:`TRANSPORT_ERRORS` for ``exc``; None when it is not a transport failure."""
    for rule in TRANSPORT_ERRORS:
        if isinstance(exc, rule.exceptions) and (rule.when is None or rule.when(exc)):
            return rule
    return None


# --------------------------------------------------------------------------- the loop


@dataclass(slots=True)
class _Failure:
    """A failed attempt worth retrying: the error if it was the last one, and the wait before the next."""

    error: type[EngineError]
    head: str  # "returned 503 Service Unavailable", "timed out after 30 s", "failed"
    detail: str
    delay: float
    reason: str | None = None
    stalled: bool | None = None


class Retrier:
    """Sends requests through the retry loop. One per client.

    ``limiter``: taken per attempt, paused when a server asks to wait. ``error``: the class of every
    error raised (the sinks' SinkError), instead of the table's. ``tls_hint``: what to do about an
    untrusted certificate, appended to that error. ``on_response``: each attempt's status, or None
    for a transport failure (metrics). ``on_wait``: each wait a server asks for (:class:`ServerWait`),
    before it is waited (a Reconciling message: "waiting for the API's rate limit until ...").
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        limiter: RequestLimiter | None = None,
        error: type[EngineError] | None = None,
        tls_hint: str = "",
        on_response: Callable[[int | None], None] | None = None,
        on_wait: Callable[[ServerWait], None] | None = None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self._error_class = error
        self._tls_hint = tls_hint
        self._on_response = on_response
        self.on_wait = on_wait

    async def send(
        self,
        shown: str,
        send: Callable[[], Awaitable[httpx.Response]],
        *,
        on_attempt: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """``send()`` once per attempt until a response no retry would change; return it.

        ``shown`` names the request in messages (``GET https://host/path``, credentials masked).
        ``on_attempt`` is called at the start of each attempt, inside its limiter slot.
        """
        attempts = self.policy.attempts
        failure: _Failure | None = None
        for attempt in range(attempts):
            if failure is not None:
                await asyncio.sleep(failure.delay)
            response, failure = await self._attempt(shown, send, on_attempt, attempt)
            if response is not None:
                return response
        assert failure is not None
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        detail = f": {failure.detail}" if failure.detail else ""
        raise self._make(failure.error, f"{shown} {failure.head}{tries}{detail}", failure.reason, failure.stalled)

    def error(self, exc: EngineError) -> EngineError:
        """``exc`` as this retrier raises errors: itself, or the same message, reason and ``stalled``
        in the caller's error class."""
        cls = self._error_class
        if cls is None or isinstance(exc, cls):
            return exc
        return cls(exc.message, reason=exc.reason, stalled=exc.stalled)

    def _make(self, error: type[EngineError], message: str, reason: str | None, stalled: bool | None) -> EngineError:
        if self._error_class is not None:
            return self._error_class(message, stalled=stalled)
        return error(message, reason=reason, stalled=stalled)

    def _notify(self, status: int | None) -> None:
        if self._on_response is not None:
            self._on_response(status)

    async def _attempt(
        self,
        shown: str,
        send: Callable[[], Awaitable[httpx.Response]],
        on_attempt: Callable[[], None] | None,
        attempt: int,
    ) -> tuple[httpx.Response | None, _Failure | None]:
        """One attempt: the final response, or what failed and how long to wait before the next
        attempt. Failures no retry can fix are raised."""
        policy = self.policy
        async with self.limiter.slot() if self.limiter is not None else contextlib.nullcontext():
            if on_attempt is not None:
                on_attempt()
            try:
                async with asyncio.timeout(policy.timeout):
                    response = await send()
            except TokenEndpointError as e:
                if not e.retryable:
                    raise self.error(e) from None
                delay = self._wait(attempt, e.retry_after, shown, None)
                return None, _Failure(AuthError, "failed", e.message, delay, stalled=False)
            except EngineError as e:  # raised by the auth flow or an event hook (destination checks)
                raise self.error(e) from None
            except Exception as e:
                rule = transport_rule(e)
                if rule is None:
                    raise
                if rule.sent:
                    self._notify(None)
                head = rule.head.format(timeout=policy.timeout or 0)
                detail = rule.detail(e)
                if rule.tls and self._tls_hint:
                    detail += f"; {self._tls_hint}"
                if not rule.retryable:
                    message = f"{shown} {head}: {detail}" if detail else f"{shown} {head}"
                    raise self._make(rule.error, message, rule.reason, rule.stalled) from None
                delay = self._wait(attempt, None, shown, None)
                return None, _Failure(rule.error, head, detail, delay, rule.reason, rule.stalled)
        self._notify(response.status_code)
        if not is_retryable_status(response):
            return response, None
        delay = self._wait(attempt, retry_after_seconds(response.headers), shown, response.status_code)
        reason = "RateLimited" if is_rate_limited(response) else None
        head = f"returned {status_text(response.status_code)}"
        return None, _Failure(HttpStatusError, head, body_start(response), delay, reason)

    def _wait(self, attempt: int, asked: float | None, shown: str, status: int | None) -> float:
        """The wait before the next attempt. A server's wait holds every attempt of the limiter,
        and is told (logged, ``on_wait``) unless it is the last attempt's (nothing is waited then)."""
        server = self.policy.server_delay(asked)
        if server is None:
            return self.policy.delay(attempt)
        if self.limiter is not None:
            self.limiter.pause(server)
        if asked is not None and attempt + 1 < self.policy.attempts:
            now = time.time()
            wait = ServerWait(shown, status, asked, server, now + server, now + asked)
            if wait.capped:
                log.warning("%s", wait.message)
            elif server >= LOG_WAITS_FROM:
                log.info("%s", wait.message)
            if self.on_wait is not None:
                self.on_wait(wait)
        return server
