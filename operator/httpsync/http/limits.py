"""Request pacing for one source: a token bucket for ``requestsPerSecond`` and a semaphore for
``maxConcurrentRequests``. Both are held per request attempt, never per endpoint, and never
during a retry's backoff. A server asking to wait (``Retry-After``) pauses every attempt of the
source (:meth:`RequestLimiter.pause`), not only the retry of the request it answered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TokenBucket:
    """At most ``rate`` requests per second on average, with bursts of up to ``burst`` requests.

    Implemented as a virtual schedule (GCRA): each caller reserves the next free slot and sleeps
    until it, so waiters are served in order with one ``asyncio.sleep`` each and no polling.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.interval = 1.0 / rate
        self.burst = max(1.0, burst)
        self._next = 0.0  # monotonic time of the next free slot

    def reserve(self) -> float:
        """Reserve a slot; the number of seconds to wait before using it."""
        now = time.monotonic()
        # Unused capacity accumulates up to ``burst`` slots.
        earliest = now - (self.burst - 1.0) * self.interval
        slot = max(self._next, earliest)
        self._next = slot + self.interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class RequestLimiter:
    """The concurrency limit and the rate limit of one source (or sink), taken for one request
    attempt. ``max_concurrent=None``: no concurrency limit (only the rate limit and the pauses)."""

    def __init__(self, max_concurrent: int | None, requests_per_second: float | None = None) -> None:
        self.max_concurrent = max_concurrent
        self._semaphore: asyncio.Semaphore | contextlib.nullcontext[None] = (
            asyncio.Semaphore(max_concurrent) if max_concurrent is not None else contextlib.nullcontext()
        )
        self._bucket = TokenBucket(requests_per_second) if requests_per_second else None
        self.in_flight = 0
        self.not_before = 0.0  # monotonic time before which no attempt starts (see pause)

    def pause(self, seconds: float) -> None:
        """Start no attempt for ``seconds`` from now (the server asked for it): attempts already
        sent are not recalled; later ones, of any request of the source, wait."""
        self.not_before = max(self.not_before, time.monotonic() + seconds)

    async def _paused(self) -> None:
        """Wait out the pause; it may be extended while waiting (another server's answer)."""
        while True:
            wait = self.not_before - time.monotonic()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            await self._paused()
            if self._bucket is not None:
                await self._bucket.acquire()
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1
