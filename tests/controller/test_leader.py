"""High availability on the real API server: two `httpsync run --leader-elect` processes of one shard.
Exactly one holds the Lease and syncs; the standby answers /healthz and writes nothing; after
``kill -9`` of the leader the standby takes over, and the catalog ends with exactly the API's
entities (none duplicated, none lost). The two share their data directory, as replicas share a
ReadWriteMany volume (or, with a remote sink, each rebuilds its memory).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.harness import (  # noqa: F401
    TOKEN,
    Operator,
    annotate,
    api_fixture,
    apply,
    get,
    mapping,
    ready,
    secret,
    source,
    users,
    wait_for,
)
from tests.controller.itemsapi import ItemsApi

pytestmark = pytest.mark.cluster

LEASE = "httpsync-test"


def replicas(kube: Any, tmp_path: Path, lease_ns: str) -> tuple[Operator, Operator]:
    shared = tmp_path / "data"
    shared.mkdir()
    ops = []
    for name in ("op-a", "op-b"):
        workdir = tmp_path / name
        workdir.mkdir()
        op = Operator(
            kube,
            workdir,
            args=(
                "--catalog", str(shared / "catalog.db"),
                "--leader-elect", "--leader-election-namespace", lease_ns, "--leader-election-id", LEASE,
                "--lease-duration", "6s",
            ),
            env={"HOSTNAME": name, "HTTPSYNC_STATE": str(shared / "state.db")},
        )  # fmt: skip
        op.catalog = shared / "catalog.db"
        ops.append(op)
    return ops[0], ops[1]


def holder(kube: Any, ns: str) -> str | None:
    out = kube.kubectl("get", "lease", LEASE, "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["spec"].get("holderIdentity")


@pytest.fixture
def pair(kube: Any, tmp_path: Path) -> Iterator[tuple[Operator, Operator, str]]:
    lease_ns = kube.new_namespace("lease")
    a, b = replicas(kube, tmp_path, lease_ns)
    try:
        yield a, b, lease_ns
    finally:
        for op in (a, b):
            op.stop()


def test_one_replica_syncs_and_the_standby_takes_over_after_kill_9(
    kube: Any, api: ItemsApi, pair: tuple[Operator, Operator, str]
) -> None:
    a, b, lease_ns = pair
    a.start()
    wait_for(lambda: (holder(kube, lease_ns) or "").startswith("op-a_"), "op-a holds the Lease", operator=a)
    b.start()  # its /healthz answers while it stands by
    assert "standby: waiting for Lease" in b.log()

    ns = kube.new_namespace("ha")
    api.token = TOKEN
    api.set_items(f"/{ns}/users", users(ns, 6))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", f"/{ns}/users"))
    wait_for(ready(kube, ns, "hem/users"), "the leader's first sync", operator=a)
    assert sorted(e["identifier"] for e in a.catalog_list() if e["identifier"].startswith(ns)) == [
        f"{ns}-{i}" for i in range(6)
    ]
    time.sleep(3)  # room for a second, wrong, sync by the standby to show up
    assert api.count(f"/{ns}/users") == 3, "one sync (3 pages) by the leader, none by the standby"
    assert "became the leader" not in b.log()
    assert (holder(kube, lease_ns) or "").startswith("op-a_")

    # The leader dies without a word; the API changes meanwhile.
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.monotonic()
    api.set_items(f"/{ns}/users", users(ns, 9)[3:])  # 0-2 gone, 6-8 new
    wait_for(lambda: (holder(kube, lease_ns) or "").startswith("op-b_"), "op-b takes the Lease", operator=b, timeout=30)
    took_over = time.monotonic() - killed
    print(f"standby took over {took_over:.1f}s after kill -9 (lease duration 6s)")

    before = get(kube, ns, "hem/users")["status"].get("lastSyncTime")
    annotate(kube, ns, "hsrc/api", "after-failover")
    wait_for(
        lambda: get(kube, ns, "hsrc/api")["status"].get("lastHandledReconcileAt") == "after-failover",
        "the new leader's sync", operator=b,
    )  # fmt: skip
    after = get(kube, ns, "hem/users")
    assert after["status"]["lastSyncTime"] != before or after["status"]["lastSync"]["entitiesDeleted"] == 3
    ids = [e["identifier"] for e in b.catalog_list() if e["identifier"].startswith(ns)]
    assert sorted(ids) == [f"{ns}-{i}" for i in range(3, 9)], "each entity exactly once, the deleted ones gone"
    assert after["status"]["entityCount"] == 6

    # A graceful stop releases the Lease at once.
    b.stop()
    wait_for(lambda: holder(kube, lease_ns) is None, "the Lease released on SIGTERM", operator=b, timeout=15)
