"""What a response means and how to tell of it: whether a retry may fix its status, the wait it
asks for, and the text of messages (the start of a body, a status with its phrase, an exception).

Everything that comes from a server or an exception goes through :func:`redact`, so a secret a
careless server echoes back never reaches a message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import httpx

from httpsync.http.redact import longest_secret, redact

BODY_START = 200
MESSAGE_MAX = 300
RETRY_STATUSES = frozenset({408, 429})  # and every 5xx, and a rate-limited 403


# --------------------------------------------------------------------------- text


def body_start(response: httpx.Response, limit: int = BODY_START) -> str:
    """The first ``limit`` characters of a response body, redacted, whitespace collapsed.

    Redacted first, then cut: a secret straddling the cut is masked whole, not shown up to it. The
    body is read up to a bound (8 KiB); when it goes on beyond, the last
    characters read, where a secret may have been cut in two, are dropped before redacting."""
    return clip(_decoded_start(response.content), limit) or "(empty body)"


READ_BOUND = 8192


def _decoded_start(content: bytes) -> str:
    bound = READ_BOUND + 4 * longest_secret()
    text = content[:bound].decode("utf-8", "replace")
    if len(content) > bound:
        text = text[: max(0, len(text) - longest_secret())]
    return text


def clip(text: str, limit: int) -> str:
    """``text`` redacted, on one line, then cut at ``limit`` characters."""
    text = redact(" ".join(redact(text).split()))
    return text[:limit] + "..." if len(text) > limit else text


def status_text(status: int) -> str:
    """``503 Service Unavailable``; the bare number for a status without a phrase."""
    phrase = httpx.codes.get_reason_phrase(status)
    return f"{status} {phrase}" if phrase else str(status)


def short(text: str, limit: int = MESSAGE_MAX) -> str:
    """``text`` redacted, on one line, cut at ``limit`` characters (redacted before it is cut)."""
    return clip(str(text), limit)


def exception_text(exc: BaseException) -> str:
    """``ConnectError: [Errno 111] Connection refused``, redacted."""
    return f"{type(exc).__name__}: {short(str(exc)) or 'no detail'}"


# --------------------------------------------------------------------------- retry or not, and when


def is_rate_limited(response: httpx.Response) -> bool:
    """429, or a 403 that says the rate limit is used up (GitHub and others answer that way)."""
    status = response.status_code
    return status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining", "").strip() == "0")


def is_retryable_status(response: httpx.Response) -> bool:
    """Whether a retry may fix this response: 408, 429, 5xx, a rate-limited 403."""
    status = response.status_code
    return status in RETRY_STATUSES or status >= 500 or is_rate_limited(response)


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
