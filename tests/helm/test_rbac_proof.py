"""RBAC proof with the chart's real identity: the chart's ServiceAccount, ClusterRole/Roles and bindings, rendered by
`helm template` and applied for real, then the operator run with a token of that ServiceAccount (and nothing else),
in namespaced and in cluster-wide mode.

It must do its whole job (watch, finalizers, status, Events, Secrets, a remote sink's sync and deletion, whose state
lives on the operator's disk) without a single Forbidden and without creating a single ConfigMap, and it must not be
able to read or write what it was not meant to (Secrets in bulk, Pods, ConfigMaps of any kind). test_chart.py asks the
API server about each verb (SubjectAccessReviews); this test shows the set is enough for the real operator.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controller.harness import (
    TOKEN,
    apply,
    events_of,
    get,
    mapping,
    owned,
    ready,
    secret,
    source,
    users,
    wait_for,
)
from tests.controller.itemsapi import ItemsApi
from tests.examples.test_examples import ScopedOperator
from tests.helm.test_chart import one, render

pytestmark = pytest.mark.cluster

IDENTITY_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
FINALIZER = "httpsync.io/finalizer"


class Receiver:
    """A webhook receiver on loopback, in a thread (the operator posts from another process)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.batches.append(json.loads(body))
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _ids(self, field: str, prefix: str) -> set[str]:
        # Only entity batches carry upserts and deletes; other messages (a sync's end) are skipped.
        return {e["identifier"] for b in self.batches for e in b.get(field) or [] if e["identifier"].startswith(prefix)}

    def upserted(self, prefix: str) -> set[str]:
        return self._ids("upserts", prefix)

    def deleted(self, prefix: str) -> set[str]:
        return self._ids("deletes", prefix)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def api() -> Iterator[ItemsApi]:
    a = ItemsApi().start()
    a.token = TOKEN
    yield a
    a.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def install_identity(kube: Any, tmp_path: Path, values: dict[str, Any], release_ns: str) -> str:
    """Apply the chart's ServiceAccount and RBAC (no Deployment: no kubelet here); the ServiceAccount's name."""
    # The release is named after its namespace: ClusterRoles of the two modes do not clash.
    docs = render(kube.bin_dir / "helm", tmp_path, values, namespace=release_ns, release=release_ns)
    identity = [d for d in docs if d["kind"] in IDENTITY_KINDS]
    kube.kubectl("apply", "--server-side", "--field-manager=rbac-proof", "-f", "-", input=yaml.safe_dump_all(identity))
    return str(one(docs, "ServiceAccount")["metadata"]["name"])


def token_kubeconfig(kube: Any, tmp_path: Path, release_ns: str, sa: str) -> Path:
    """A kubeconfig with only a token of the ServiceAccount (server and CA from the admin's kubeconfig)."""
    token = kube.kubectl("create", "token", sa, "-n", release_ns, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, "a JWT"
    admin = json.loads(Path(kube.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": sa}}],
        "current-context": "operator",
    }
    path = tmp_path / "operator.kubeconfig"
    path.write_text(json.dumps(cfg))
    os.chmod(path, 0o600)
    return path


def configmaps(kube: Any, *namespaces: str) -> dict[str, dict[str, Any]]:
    """Every ConfigMap of these namespaces as the admin sees it, by namespace/name."""
    found = {}
    for ns in namespaces:
        for cm in kube.get_json("configmaps", "-n", ns)["items"]:
            found[f"{ns}/{cm['metadata']['name']}"] = cm
    return found


def as_operator(kube: Any, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kube.plane.kubectl_path()), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_forbidden(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), f"{what} should be Forbidden: {proc}"


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_operator_does_its_job_with_the_charts_identity_and_no_more(
    kube: Any, tmp_path: Path, api: ItemsApi, receiver: Receiver, request: pytest.FixtureRequest, mode: str
) -> None:
    release_ns, watched, other = kube.new_namespace("rel"), kube.new_namespace("watch"), kube.new_namespace("other")
    namespaced = mode == "namespaced"
    sa = install_identity(kube, tmp_path, {"watchNamespaces": [watched]} if namespaced else {}, release_ns)
    kubeconfig = token_kubeconfig(kube, tmp_path, release_ns, sa)
    whoami = as_operator(kube, kubeconfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{release_ns}:{sa}", whoami
    wait_for(  # the RBAC authorizer's informers lag the writes a little
        lambda: as_operator(kube, kubeconfig, "auth", "can-i", "patch", "httpsources.httpsync.io", "-n", watched)
        .stdout.strip() == "yes",
        "the chart's RBAC in effect", timeout=15,
    )  # fmt: skip

    # What a user applies (as the admin): a source synced into the embedded catalog, one into a webhook (a remote
    # sink: what it pushed is remembered in the operator's state file, never in the cluster), a ConfigMap of the
    # user's own in the watched namespace and, next door, a Secret the operator has no business reading.
    path = f"/{watched}/users"
    api.set_items(path, users(watched, 3))
    webhook = {"type": "webhook", "webhook": {"url": receiver.url}}
    apply(
        kube, watched,
        secret("api-creds", token=TOKEN),
        source("api", api.url),
        mapping("users", "api", path),
        source("hooked", api.url, sink=webhook),
        mapping("hooked-users", "hooked", path),
    )  # fmt: skip
    apply(kube, other, secret("x", token="not-for-the-operator"))
    mine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}, "data": {"a": "b"}}
    apply(kube, watched, mine)
    if namespaced:  # a source the operator does not watch
        api.set_items(f"/{other}/users", users(other, 2))
        unwatched = mapping("users", "api", f"/{other}/users")
        apply(kube, other, secret("api-creds", token=TOKEN), source("api", api.url), unwatched)

    ours = (release_ns, watched, other)
    before = configmaps(kube, *ours)
    assert f"{watched}/mine" in before
    op = ScopedOperator(kube, tmp_path, [watched] if namespaced else [], kubeconfig=str(kubeconfig))
    op.start()
    request.addfinalizer(op.stop)

    # The job: status, conditions, entity counts, finalizers, Events, Secrets read, a remote sink synced.
    hem = wait_for(ready(kube, watched, "hem/users"), "mapping users Ready", operator=op)
    assert hem["status"]["entityCount"] == 3 and hem["status"]["lastSync"]["itemsFetched"] == 3
    assert hem["status"]["observedGeneration"] == hem["metadata"]["generation"]
    assert FINALIZER in hem["metadata"]["finalizers"]
    assert sorted(owned(op, watched)) == [f"{watched}-{i}" for i in range(3)]
    src = wait_for(ready(kube, watched, "hsrc/api"), "source api Ready", operator=op)
    assert src["status"]["endpoints"] == "1/1" and FINALIZER in src["metadata"]["finalizers"]
    hooked = wait_for(ready(kube, watched, "hem/hooked-users"), "mapping hooked-users Ready", operator=op)
    assert hooked["status"]["entityCount"] == 3
    assert receiver.upserted(watched) == {f"{watched}-{i}" for i in range(3)}
    wait_for(lambda: any(e["reason"] == "Synced" for e in events_of(kube, watched, "users")), "a Synced Event")
    # Not one ConfigMap written by the syncs: the webhook sink's state is on the operator's disk.
    assert configmaps(kube, *ours) == before, "a sync created or changed a ConfigMap"

    # Deletion: the operator removes the entities, then its finalizer, so the mapping goes away.
    kube.kubectl("delete", "-n", watched, "hem/users", "--timeout=60s")
    assert owned(op, watched) == {}
    kube.kubectl("delete", "-n", watched, "hem/hooked-users", "--timeout=60s")
    # ... and for the webhook from its local state alone: it knows what it pushed without any ConfigMap.
    assert receiver.deleted(watched) == {f"{watched}-{i}" for i in range(3)}
    assert configmaps(kube, *ours) == before, "a deletion created or changed a ConfigMap"

    # And no more.
    assert_forbidden(as_operator(kube, kubeconfig, "get", "secrets", "-n", watched), "listing Secrets")
    assert_forbidden(as_operator(kube, kubeconfig, "get", "secrets", "-A"), "listing Secrets cluster-wide")
    assert_forbidden(as_operator(kube, kubeconfig, "get", "pods", "-n", watched), "reading Pods")
    assert_forbidden(
        as_operator(kube, kubeconfig, "create", "secret", "generic", "y", "-n", watched, "--from-literal=a=b"),
        "creating Secrets",
    )
    assert_forbidden(
        as_operator(kube, kubeconfig, "delete", "httpsource", "api", "-n", watched), "deleting HttpSources"
    )
    # ConfigMaps: nothing at all, not even in a namespace it watches.
    assert_forbidden(as_operator(kube, kubeconfig, "get", "configmaps", "-n", watched), "listing ConfigMaps")
    assert_forbidden(as_operator(kube, kubeconfig, "get", "configmap", "mine", "-n", watched), "reading a ConfigMap")
    assert_forbidden(
        as_operator(kube, kubeconfig, "create", "configmap", "y", "-n", watched, "--from-literal=a=b"),
        "creating ConfigMaps",
    )
    changed = tmp_path / "configmap.json"
    changed.write_text(json.dumps({**mine, "metadata": {"name": "mine", "namespace": watched}, "data": {"a": "c"}}))
    assert_forbidden(as_operator(kube, kubeconfig, "replace", "-f", str(changed)), "updating ConfigMaps")
    patch = ["--type=merge", "-p", '{"data":{"a":"d"}}']
    assert_forbidden(as_operator(kube, kubeconfig, "patch", "configmap", "mine", "-n", watched, *patch), "patching")
    assert_forbidden(as_operator(kube, kubeconfig, "delete", "configmap", "mine", "-n", watched), "deleting ConfigMaps")
    assert_forbidden(
        as_operator(kube, kubeconfig, "delete", "configmaps", "--all", "-n", watched), "deleting ConfigMaps in bulk"
    )
    assert configmaps(kube, *ours) == before, "the user's ConfigMap is untouched"
    if namespaced:
        assert_forbidden(as_operator(kube, kubeconfig, "get", "secret", "x", "-n", other), "a Secret of another ns")
        user = f"system:serviceaccount:{release_ns}:{sa}"
        can = kube.kubectl("auth", "can-i", "get", "secrets", "-n", other, f"--as={user}", check=False)
        assert can.stdout.strip() == "no", can
        assert_forbidden(as_operator(kube, kubeconfig, "get", "httpsources", "-n", other), "unwatched sources")
        # The unwatched source was never touched: no status, no finalizer, no request to its API.
        time.sleep(1)
        for what in ("hsrc/api", "hem/users"):
            obj = get(kube, other, what)
            assert "status" not in obj and not obj["metadata"].get("finalizers"), obj
        assert api.count(f"/{other}/users") == 0
    else:
        # Cluster-wide, a Secret is read by name in any namespace (sources live anywhere), never listed or watched.
        assert as_operator(kube, kubeconfig, "get", "secret", "x", "-n", other).returncode == 0

    # Not one refusal on the way (kopf retries a Forbidden for about a minute, then falls back and warns).
    log = op.log(tail=10**7)
    for sign in ("APIForbiddenError", "Not enough permissions", "Reason: Forbidden", "Traceback"):
        assert sign not in log, log[-6000:]
