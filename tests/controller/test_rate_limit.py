"""A long wait the API asks for (429 with Retry-After) is visible on the source while the sync waits:
Reconciling=True, reason RateLimited, the message saying until when; the sync then succeeds and the
condition goes away."""

from __future__ import annotations

from typing import Any

import pytest

from tests.controller.harness import (  # noqa: F401
    TOKEN,
    Operator,
    api_fixture,
    apply,
    condition,
    get,
    mapping,
    operator_fixture,
    ready,
    secret,
    source,
    users,
    wait_for,
)
from tests.controller.itemsapi import ItemsApi

pytestmark = pytest.mark.cluster


def test_a_rate_limit_wait_is_shown_while_it_lasts(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("ratelimit")
    api.token = TOKEN
    api.set_items(f"/{ns}/users", users(ns, 3))
    api.fail_status, api.retry_after = 429, "12"
    src = source("api", api.url, retry={"maxRetries": 2, "maxRetryAfterSeconds": 60})
    apply(kube, ns, secret("api-creds", token=TOKEN), src, mapping("users", "api", f"/{ns}/users"))

    def waiting() -> dict[str, Any] | None:
        rec = condition(get(kube, ns, "hsrc/api"), "Reconciling") or {}
        return rec if rec.get("reason") == "RateLimited" else None

    rec = wait_for(waiting, "the source saying it waits for the rate limit", operator=operator)
    assert rec["status"] == "True"
    assert "429" in rec["message"] and "waiting for the API's rate limit until" in rec["message"]
    assert TOKEN not in rec["message"]
    api.fail_status = None  # the retry after the wait succeeds
    wait_for(ready(kube, ns, "hem/users"), "the sync after the wait", operator=operator, timeout=60)
    src_now = wait_for(ready(kube, ns, "hsrc/api"), "the source Ready", operator=operator)
    assert condition(src_now, "Reconciling") is None, "Reconciling present only while True"
