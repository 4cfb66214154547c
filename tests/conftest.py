"""Shared fixtures: one real control plane (etcd + kube-apiserver) for the whole run.

Tests that need it are marked ``@pytest.mark.cluster`` and use the ``kube`` fixture. If the
binaries cannot be had, those tests fail with a message saying how to get them; they are
never skipped silently.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from httpsync.devcluster.cluster import ControlPlane, ControlPlaneError, build_binaries

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.testapi.fixtures", "tests.portapi.fixtures"]


@dataclass
class Kube:
    """Handle on the test cluster."""

    plane: ControlPlane
    _ns_counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def kubeconfig(self) -> str:
        return str(self.plane.kubeconfig)

    @property
    def bin_dir(self) -> Path:
        return self.plane.bin_dir

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.plane.kubectl_path()), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
        return proc

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def new_namespace(self, prefix: str = "t") -> str:
        """A fresh namespace (namespaces never finish deleting here, so names are never reused)."""
        name = f"{prefix}-{os.getpid()}-{next(self._ns_counter)}-{int(time.time() * 1000) % 100000}"
        self.kubectl("create", "namespace", name)
        return name

    def apply_crds(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        wait_established(self)


CRD_NAMES = ("crd/httpsources.httpsync.io", "crd/httpendpointmappings.httpsync.io")


def wait_established(kube: Kube, timeout: float = 60) -> None:
    """Wait for both CRDs to be Established and served. Right after creation `kubectl wait` can fail
    at once with "conditions accessor error" (no status yet) instead of waiting: retry."""
    deadline = time.monotonic() + timeout
    while True:
        proc = kube.kubectl("wait", "--for=condition=Established", "--timeout=30s", *CRD_NAMES, check=False)
        if (
            proc.returncode == 0
            and kube.kubectl("get", "httpsources,httpendpointmappings", "-A", check=False).returncode == 0
        ):
            return
        assert time.monotonic() < deadline, f"CRDs not Established: {proc.stderr}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        bins = build_binaries(quiet=True)
    except ControlPlaneError as e:
        pytest.fail(
            "the real control plane is needed for this test and could not be had: "
            f"{e}\nBuild it with `bash operator/httpsync/devcluster/build-control-plane.sh` "
            "(Go >= 1.24, 10-15 minutes the first time) or set KUBEBUILDER_ASSETS.",
            pytrace=False,
        )
    plane = ControlPlane(state=tmp_path_factory.mktemp("cluster"), bin_dir=bins)
    try:
        plane.start()
    except ControlPlaneError as e:
        pytest.fail(f"the control plane did not start: {e}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    k = Kube(control_plane)
    k.apply_crds()
    return k
