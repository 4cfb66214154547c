"""What creating objects costs the API server, read from the API server's own request counters
(``apiserver_request_total`` on ``/metrics``): every write (POST, PATCH, PUT, DELETE, APPLY) to
HttpSources, HttpEndpointMappings (status included) and Events between applying a batch of new objects
and the moment everything is Ready and the operator is quiet.

The operator runs as ``httpsync run`` in its own process (tests/controller/harness.py).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from httpsync.devcluster.cluster import apiserver_writes
from tests.controller.harness import (  # noqa: F401
    TOKEN,
    Operator,
    api_fixture,
    apply,
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

def writes(kube: Any) -> Counter[tuple[str, str, str, str]]:
    """(resource, subresource, verb, code) -> requests so far, for the writes this test counts."""
    return apiserver_writes(kube.kubectl("get", "--raw", "/metrics").stdout)


def quiet(kube: Any, seconds: float = 4.0) -> Counter[tuple[str, str, str, str]]:
    """The write counters once they have not moved for ``seconds``."""
    last = writes(kube)
    stable_since = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = writes(kube)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            return now
    raise AssertionError("the operator never went quiet")


def test_creating_objects_costs_few_writes_and_no_conflicts(kube: Any, api: ItemsApi, operator: Operator) -> None:
    ns = kube.new_namespace("writes")
    n_sources = 5
    docs: list[dict[str, Any]] = [secret("api-creds", token=TOKEN)]
    for s in range(n_sources):
        docs.append(source(f"src-{s}", api.url))
        for m in range(2):
            path = f"/w{s}m{m}"
            api.items[path] = users(f"w{s}m{m}", 3)
            docs.append(mapping(f"map-{s}-{m}", f"src-{s}", path))
    objects = len(docs) - 1
    before = quiet(kube)
    apply(kube, ns, *docs)
    for s in range(n_sources):
        wait_for(ready(kube, ns, f"httpsource/src-{s}"), f"src-{s} Ready", operator=operator, timeout=90)
    after = quiet(kube)
    delta = after - before

    conflicts = {k: v for k, v in delta.items() if k[3] == "409" or k[3] == "422"}
    assert not conflicts, f"conflicting writes: {conflicts}\nall writes: {dict(delta)}"
    # kubectl's own creates are not the operator's.
    creates = sum(v for (res, sub, verb, _), v in delta.items() if verb == "POST" and res != "events" and not sub)
    assert creates == objects
    operator_writes = sum(delta.values()) - creates
    per_object = operator_writes / objects
    print(f"writes per created object: {per_object:.2f} ({operator_writes} for {objects} objects): {dict(delta)}")
    events = kube.kubectl(
        "get", "events", "-n", ns, "--sort-by=.metadata.creationTimestamp",
        "-o", "custom-columns=OBJ:.involvedObject.name,REASON:.reason,MSG:.message",
    ).stdout  # fmt: skip
    assert per_object <= 4, (
        f"{per_object:.2f} writes per created object (target <= 4): {dict(delta)}\n{events}\n{operator.log(20000)}"
    )
