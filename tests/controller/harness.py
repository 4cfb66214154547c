"""What the operator tests share: `httpsync run` (``python -m httpsync.controller``) in a subprocess against
the real kube-apiserver of the ``kube`` fixture, the loopback items API it syncs from (itemsapi.py), and
helpers to build manifests, apply them with kubectl and wait for what a user would wait for.

Used by tests/controller/test_operator.py and tests/packaging/test_kstatus.py.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.controller.itemsapi import ItemsApi

T = TypeVar("T")
TOKEN = "s3cr3t-bearer-token-value"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    def __init__(self, kube: Any, workdir: Path, *args: str) -> None:
        self.kube = kube
        self.args = args  # more `httpsync run` flags, e.g. --shard
        self.catalog = workdir / "catalog.db"
        self.state = workdir / "state.db"  # remote sinks' memory (a pod's emptyDir)
        self.logfile = workdir / "operator.log"
        self.metrics_port = _free_port()
        self.health_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            sys.executable, "-m", "httpsync.controller", "-A",
            "--catalog", str(self.catalog),
            "--metrics-port", str(self.metrics_port),
            "--health-port", str(self.health_port),
            *self.args,
        ]  # fmt: skip
        env = self.kube.env
        env["PYTHONUNBUFFERED"] = "1"
        env["HTTPSYNC_STATE"] = str(self.state)
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, "the operator's /healthz", operator=self, timeout=60)

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"operator exited:\n{self.log()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self, tail: int = 4000) -> str:
        return self.logfile.read_text(errors="replace")[-tail:] if self.logfile.exists() else ""

    def catalog_list(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "httpsync.cli", "catalog", "list", "--catalog", str(self.catalog), "-o", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()


def wait_for(fn: Callable[[], T], what: str, *, operator: Operator | None = None, timeout: float = 45) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(
        f"timed out waiting for {what}; last value: {last!r}\n"
        f"--- operator log ---\n{operator.log() if operator else ''}"
    )


# Fixtures under another function name, so that a test module imports them (with a noqa for F401) without its
# tests' parameters (``api``, ``operator``) shadowing the import: `from tests.controller.harness import api_fixture`.
# Module-scoped: each importing module gets its own API and operator process, stopped at its end.


@pytest.fixture(scope="module", name="api")
def api_fixture() -> Iterator[ItemsApi]:
    a = ItemsApi().start()
    yield a
    a.stop()


@pytest.fixture(scope="module", name="operator")
def operator_fixture(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(kube, tmp_path_factory.mktemp("operator"))
    op.start()
    try:
        yield op
    finally:
        op.stop()


# ---------------------------------------------------------------------------- objects and waiting


def apply(kube: Any, ns: str, *docs: dict[str, Any]) -> None:
    kube.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))


def get(kube: Any, ns: str, what: str) -> dict[str, Any]:
    return json.loads(kube.kubectl("get", "-n", ns, what, "-o", "json").stdout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return None


def ready(kube: Any, ns: str, what: str, status: str = "True", reason: str | None = None) -> Callable[[], Any]:
    def check() -> Any:
        obj = get(kube, ns, what)
        c = condition(obj, "Ready")
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return obj
        return None

    return check


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def source(name: str, url: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "baseUrl": url,
        "auth": {"type": "bearer", "secretRef": {"name": "api-creds", "key": "token"}},
        "pagination": {"type": "page", "pageSize": 2, "sizeParam": "size", "totalPath": ".total"},
        "retry": {"maxRetries": 0},
        "interval": "1h",
    }
    body.update(spec)
    return {"apiVersion": "httpsync.io/v1alpha1", "kind": "HttpSource", "metadata": {"name": name}, "spec": body}


def mapping(name: str, src: str, kind: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sourceRef": {"name": src},
        "kind": kind,
        "selector": {"dataPath": ".data"},
        "mappings": {
            "identifier": ".id | tostring",
            "title": ".name",
            "blueprint": '"user"',
            "properties": {"team": ".team"},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "httpsync.io/v1alpha1",
        "kind": "HttpEndpointMapping",
        "metadata": {"name": name},
        "spec": body,
    }


def users(path_prefix: str, n: int, team: str = "a") -> list[dict[str, Any]]:
    return [{"id": f"{path_prefix}-{i}", "name": f"User {i}", "team": team} for i in range(n)]


def owned(op: Operator, ids_prefix: str) -> dict[str, dict[str, Any]]:
    return {e["identifier"]: e for e in op.catalog_list() if e["identifier"].startswith(ids_prefix)}


def annotate(kube: Any, ns: str, what: str, value: str) -> None:
    kube.kubectl("annotate", "-n", ns, what, f"httpsync.io/requested-at={value}", "--overwrite")


def events_of(kube: Any, ns: str, name: str) -> list[dict[str, Any]]:
    items = get(kube, ns, "events")["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]
