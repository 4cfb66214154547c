"""A wait the API asks for beyond ``maxRetryAfterSeconds`` is not silent: it is logged ("waiting for
the API's rate limit until <time>") and given to the caller's ``on_wait`` hook (the operator's
Reconciling message), through the retry loop and the source client alike."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from httpsync.engine.client import SourceClient
from httpsync.http.limits import RequestLimiter
from httpsync.http.retry import Retrier, RetryPolicy, ServerWait
from tests.http.scripted import Reply, Scripted
from tests.testapi.fixtures import StaticSecrets, source_spec


@pytest.fixture
async def api() -> AsyncIterator[Scripted]:
    async with Scripted() as server:
        yield server


def stamp(text: str, after: str) -> float:
    """The epoch of the ``YYYY-MM-DDTHH:MM:SSZ`` following ``after`` in ``text``."""
    value = text.split(after, 1)[1].split()[0].rstrip(";)")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


async def test_a_retry_after_beyond_the_cap_is_logged_and_told(api: Scripted, caplog: pytest.LogCaptureFixture) -> None:
    api.script("/limited", Reply(429, "slow down", {"Retry-After": "100000"}))
    waits: list[ServerWait] = []
    policy = RetryPolicy(max_retries=1, backoff=0.001, max_backoff=0.01, max_retry_after=0.05, timeout=5)
    async with httpx.AsyncClient() as http:
        retrier = Retrier(policy, limiter=RequestLimiter(None), on_wait=waits.append)
        before = time.time()
        with caplog.at_level(logging.INFO, logger="httpsync.http"):
            response = await retrier.send("GET /limited", lambda: http.get(f"{api.url}/limited"))
    assert response.status_code == 200  # retried after the capped wait
    [wait] = waits
    assert (wait.status, wait.asked, wait.seconds, wait.capped) == (429, 100000, 0.05, True)
    assert before + 99_000 < wait.asked_until < time.time() + 100_001
    [record] = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("GET /limited returned 429 Too Many Requests: waiting for the API's rate limit until ")
    assert "it asked to wait 100000 s, until " in message and "retry.maxRetryAfterSeconds" in message
    assert abs(stamp(message, "asked to wait 100000 s, until ") - wait.asked_until) < 2
    assert wait.message == message


async def test_the_source_client_passes_waits_to_its_hook(api: Scripted) -> None:
    api.script("/items", Reply(503, "busy", {"Retry-After": "0.01"}))
    waits: list[ServerWait] = []
    spec = source_spec(api.url)
    async with await SourceClient.create(spec, StaticSecrets(), on_wait=waits.append) as client:
        await client.get_json("GET", client.url_for("/items"))
    [wait] = waits
    assert wait.request == f"GET {api.url}/items" and not wait.capped and wait.status == 503
