"""What kstatus makes of our resources: the real library on real objects.

kstatus is the status library of sigs.k8s.io/cli-utils (``status.Compute``) that Flux's health checks and
kubectl-based tooling use. ``hack/kstatus`` wraps it in a small command, built from Go modules with the
control plane (operator/httpsync/devcluster/build-control-plane.sh links it into the control plane's folder).
The objects are not hand-written: the real operator (``httpsync run`` in a subprocess, tests/controller/harness.py)
syncs them against a loopback API and the test reads them back from the API server with kubectl.

EXPECTED is the whole contract, one row per state the operator puts a resource in: the conditions the test waits
for, Ready's reason, and kstatus's verdict. Change a row there when the operator's behaviour changes on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.controller.harness import (  # noqa: F401 (api_fixture, operator_fixture: the pytest fixtures api, operator)
    TOKEN,
    ItemsApi,
    Operator,
    annotate,
    api_fixture,
    apply,
    get,
    mapping,
    operator_fixture,
    secret,
    source,
    users,
    wait_for,
)

pytestmark = pytest.mark.cluster

KSTATUS = {"InProgress", "Failed", "Current", "Terminating", "NotFound", "Unknown"}


@dataclass(frozen=True)
class Row:
    conditions: str  # the status conditions, "Type=Status" in list order ("": no status at all)
    reason: str | None  # Ready's reason (None: not checked)
    kstatus: str  # status.Compute's verdict


EXPECTED: dict[str, Row] = {
    "source synced": Row("Ready=True", "Succeeded", "Current"),
    "mapping synced": Row("Ready=True", "Succeeded", "Current"),
    "mapping failed, HTTP 503 (retried next sync)": Row("Ready=False", "HttpError", "InProgress"),
    "source whose mapping failed": Row("Ready=False", "EndpointsFailed", "InProgress"),
    "source stalled, Secret missing": Row("Ready=False Stalled=True", "SecretNotFound", "Failed"),
    "mapping of a stalled source": Row("Ready=False Stalled=True", "SecretNotFound", "Failed"),
    "mapping stalled, invalid jq": Row("Ready=False Stalled=True", "InvalidJq", "Failed"),
    # Every failing mapping needs a change: so does the source.
    "source whose mapping is stalled": Row("Ready=False Stalled=True", "EndpointsFailed", "Failed"),
    "source suspended": Row("Ready=True", "Suspended", "Current"),
    "mapping of a suspended source": Row("Ready=True", "Suspended", "Current"),
    "source suspended before its first sync": Row("Ready=Unknown", "Suspended", "InProgress"),
    "source, first sync in progress": Row("Ready=Unknown Reconciling=True", "Progressing", "InProgress"),
    "mapping, first sync in progress": Row("Ready=Unknown Reconciling=True", "Progressing", "InProgress"),
    "source re-syncing on request": Row("Ready=True Reconciling=True", "Succeeded", "InProgress"),
    "source spec changed, next sync not started": Row("Ready=True", "Succeeded", "InProgress"),
    # A source that syncs nothing is not done: Ready=False (not Stalled: creating a mapping fixes it).
    "source without mappings": Row("Ready=False", "NoMappings", "InProgress"),
    "source the operator has not seen yet": Row("", None, "Current"),
    "mapping being deleted": Row("Ready=True", "Succeeded", "Terminating"),
}


# ---------------------------------------------------------------------------- kstatus and waiting


@pytest.fixture(scope="module")
def kstatus_bin(kube: Any) -> Path:
    binary = kube.bin_dir / "kstatus"
    if not os.access(binary, os.X_OK):
        pytest.fail(
            f"{binary} is missing: it is built from hack/kstatus with the control plane, by "
            "`bash operator/httpsync/devcluster/build-control-plane.sh` (Go >= 1.24, 1-3 minutes the first time)",
            pytrace=False,
        )
    return binary


def kstatus(binary: Path, obj: dict[str, Any]) -> Any:
    """The real status.Compute on an object (a verdict) or a List (a list of verdicts)."""
    proc = subprocess.run([str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"kstatus failed ({proc.returncode}): {proc.stderr}"
    return json.loads(proc.stdout)


def conditions_of(obj: dict[str, Any]) -> str:
    return " ".join(f"{c['type']}={c['status']}" for c in (obj.get("status") or {}).get("conditions") or [])


def ready_reason(obj: dict[str, Any]) -> str | None:
    c = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    return c["reason"] if c else None


def check(
    kube: Any, binary: Path, operator: Operator, ns: str, what: str, state: str, timeout: float = 45
) -> dict[str, Any]:
    """Wait for the object to be in the state EXPECTED[state] describes, then assert kstatus's verdict on it."""
    row = EXPECTED[state]
    seen: list[str] = []

    def in_state() -> dict[str, Any] | None:
        obj = get(kube, ns, what)
        now = f"{conditions_of(obj) or 'no conditions'} ({ready_reason(obj)})"
        if not seen or seen[-1] != now:
            seen.append(now)
        if conditions_of(obj) == row.conditions and (row.reason is None or ready_reason(obj) == row.reason):
            return obj
        return None

    try:
        obj = wait_for(in_state, f"{what}: {state} ({row.conditions} {row.reason})", operator=operator, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{what} went through: {' -> '.join(seen)}\n{e}") from None
    verdict = kstatus(binary, obj)
    assert verdict["status"] in KSTATUS
    assert verdict["status"] == row.kstatus, (
        f"{what} ({state}): kstatus says {verdict['status']} ({verdict['message']!r}), expected {row.kstatus}; "
        f"status: {json.dumps(obj.get('status'), indent=1)}"
    )
    return verdict


@contextmanager
def items_api(fail_status: int | None = None) -> Iterator[tuple[ItemsApi, threading.Event, list[str]]]:
    """A loopback items API of the test's own, a gate (while it is clear, every request waits at it) and the
    paths of the requests that arrived, held or not."""
    api = ItemsApi()
    api.fail_status = fail_status
    gate = threading.Event()
    gate.set()
    arrived: list[str] = []
    handler = api.server.RequestHandlerClass

    class Gated(handler):  # type: ignore[misc,valid-type]
        def do_GET(self) -> None:
            arrived.append(self.path)
            gate.wait(60)
            super().do_GET()

    api.server.RequestHandlerClass = Gated
    api.start()
    try:
        yield api, gate, arrived
    finally:
        gate.set()
        api.stop()


# ---------------------------------------------------------------------------- the states


def test_synced_and_transient_failure(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    ns = kube.new_namespace("kst")
    api.set_items(f"/{ns}/users", users(ns, 3))
    with items_api(fail_status=503) as (down, _, _):
        apply(
            kube, ns,
            secret("api-creds", token=TOKEN),
            source("api", api.url),
            mapping("users", "api", f"/{ns}/users"),
            source("down", down.url),
            mapping("down-users", "down", f"/{ns}/users"),
        )  # fmt: skip
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")
        check(kube, kstatus_bin, operator, ns, "hem/users", "mapping synced")
        state = "mapping failed, HTTP 503 (retried next sync)"
        failed = check(kube, kstatus_bin, operator, ns, "hem/down-users", state)
        assert "503" in failed["message"], failed
        check(kube, kstatus_bin, operator, ns, "hsrc/down", "source whose mapping failed")

    # A List (what `kubectl get hsrc,hem -o json` prints) gives one verdict per item, in order.
    listed = kube.get_json("-n", ns, "hsrc,hem")
    verdicts = {(v["kind"], v["name"]): v["status"] for v in kstatus(kstatus_bin, listed)}
    assert verdicts[("HttpSource", "api")] == EXPECTED["source synced"].kstatus
    assert verdicts[("HttpEndpointMapping", "users")] == EXPECTED["mapping synced"].kstatus
    assert len(verdicts) == len(listed["items"]) == 4


def test_stalled(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    ns = kube.new_namespace("kst")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 2))
    bad = mapping("badjq", "api", path)
    bad["spec"]["mappings"]["title"] = ".name | ("
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("nosecret", api.url, auth={"type": "bearer", "secretRef": {"name": "missing", "key": "token"}}),
        mapping("unread", "nosecret", path),
        source("api", api.url),
        mapping("users", "api", path),  # one good mapping: the source's own failure is not the jq error
        bad,
    )  # fmt: skip
    stalled = check(kube, kstatus_bin, operator, ns, "hsrc/nosecret", "source stalled, Secret missing")
    assert "missing" in stalled["message"], stalled
    check(kube, kstatus_bin, operator, ns, "hem/unread", "mapping of a stalled source")
    check(kube, kstatus_bin, operator, ns, "hem/badjq", "mapping stalled, invalid jq")
    check(kube, kstatus_bin, operator, ns, "hsrc/api", "source whose mapping is stalled")


def test_suspended(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    ns = kube.new_namespace("kst")
    api.set_items(f"/{ns}/users", users(ns, 2))
    apply(
        kube, ns,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("users", "api", f"/{ns}/users"),
        source("paused", api.url, suspend=True),
        mapping("paused-users", "paused", f"/{ns}/users"),
    )  # fmt: skip
    check(kube, kstatus_bin, operator, ns, "hem/users", "mapping synced")
    check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")
    apply(kube, ns, source("api", api.url, suspend=True))
    check(kube, kstatus_bin, operator, ns, "hsrc/api", "source suspended")
    check(kube, kstatus_bin, operator, ns, "hem/users", "mapping of a suspended source")
    check(kube, kstatus_bin, operator, ns, "hsrc/paused", "source suspended before its first sync")


def test_sync_in_progress(kube: Any, operator: Operator, kstatus_bin: Path) -> None:
    """The API holds every request at a gate, so the operator is caught in the middle of its syncs."""
    ns = kube.new_namespace("kst")
    path = f"/{ns}/users"
    with items_api() as (slow, gate, _):
        slow.set_items(path, users(ns, 2))
        apply(kube, ns, secret("api-creds", token=TOKEN), source("api", slow.url), mapping("users", "api", path))
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")

        gate.clear()
        annotate(kube, ns, "hsrc/api", "resync")  # a sync on request: Reconciling=True beside Ready=True
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source re-syncing on request")
        apply(kube, ns, mapping("new", "api", path))  # a new mapping of a source whose sync is under way
        check(kube, kstatus_bin, operator, ns, "hem/new", "mapping, first sync in progress")

        gate.set()
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")
        for what in ("hem/users", "hem/new"):
            check(kube, kstatus_bin, operator, ns, what, "mapping synced")


def test_source_first_sync_in_progress(kube: Any, operator: Operator, kstatus_bin: Path) -> None:
    ns = kube.new_namespace("kst")
    path = f"/{ns}/users"
    with items_api() as (slow, gate, arrived):
        slow.set_items(path, users(ns, 2))
        # The mapping first, so that the source's first sync has it (and waits at the gate).
        apply(kube, ns, secret("api-creds", token=TOKEN), mapping("users", "api", path))
        wait_for(lambda: ready_reason(get(kube, ns, "hem/users")) == "SourceNotFound", "SourceNotFound")
        gate.clear()
        apply(kube, ns, source("api", slow.url))
        wait_for(lambda: arrived, "the first sync's first request (held at the gate)", operator=operator)
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source, first sync in progress", timeout=5)
        gate.set()
        check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")


def test_spec_changed_and_not_yet_seen(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    """With the operator stopped, nothing reacts: a changed spec and a new source stay as the API server has them."""
    ns = kube.new_namespace("kst")
    api.set_items(f"/{ns}/users", users(ns, 2))
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), mapping("users", "api", f"/{ns}/users"))
    check(kube, kstatus_bin, operator, ns, "hsrc/api", "source synced")

    operator.stop()
    try:
        apply(kube, ns, source("api", api.url, interval="2h"))
        changed = check(kube, kstatus_bin, operator, ns, "hsrc/api", "source spec changed, next sync not started")
        obj = get(kube, ns, "hsrc/api")
        assert (obj["metadata"]["generation"], obj["status"]["observedGeneration"]) == (2, 1)
        assert "generation is 2, but latest observed generation is 1" in changed["message"], changed
        # No status at all reads as Current: why the operator writes Ready=Unknown/Reconciling=True on first contact.
        apply(kube, ns, source("unseen", api.url), mapping("unseen-users", "unseen", f"/{ns}/users"))
        check(kube, kstatus_bin, operator, ns, "hsrc/unseen", "source the operator has not seen yet")
    finally:
        operator.start()

    def synced_again() -> bool:
        obj = get(kube, ns, "hsrc/api")
        return obj["status"]["observedGeneration"] == 2 and conditions_of(obj) == "Ready=True"

    wait_for(synced_again, "generation 2 synced", operator=operator)
    check(kube, kstatus_bin, operator, ns, "hsrc/unseen", "source synced")
    check(kube, kstatus_bin, operator, ns, "hem/unseen-users", "mapping synced")


def test_source_without_mappings(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    ns = kube.new_namespace("kst")
    apply(kube, ns, secret("api-creds", token=TOKEN), source("lonely", api.url))
    check(kube, kstatus_bin, operator, ns, "hsrc/lonely", "source without mappings")


def test_terminating(kube: Any, api: ItemsApi, operator: Operator, kstatus_bin: Path) -> None:
    """A finalizer of someone else's keeps the deleted mapping in the API server after the operator let go."""
    ns = kube.new_namespace("kst")
    path = f"/{ns}/users"
    api.set_items(path, users(ns, 2))
    held = mapping("users", "api", path)
    held["metadata"]["finalizers"] = ["test.httpsync.io/hold"]
    apply(kube, ns, secret("api-creds", token=TOKEN), source("api", api.url), held)
    check(kube, kstatus_bin, operator, ns, "hem/users", "mapping synced")
    kube.kubectl("delete", "-n", ns, "hem/users", "--wait=false")
    try:
        check(kube, kstatus_bin, operator, ns, "hem/users", "mapping being deleted")
        wait_for(
            lambda: get(kube, ns, "hem/users")["metadata"].get("finalizers") == ["test.httpsync.io/hold"],
            "the operator's finalizer released", operator=operator,
        )  # fmt: skip
    finally:
        kube.kubectl("patch", "-n", ns, "hem/users", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
