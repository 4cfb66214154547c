"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback, without Docker.

The binaries are built from Go modules by ``build-control-plane.sh`` (next to this file) and
cached outside the repository; ``KUBEBUILDER_ASSETS`` (the envtest convention) skips the build.
There is no kubelet and no controller-manager: nothing runs Pods, namespaces never finish
deleting, and garbage collection through ownerReferences does not happen.

Used by a person (``httpsync cluster up`` / ``down``) and by the test suite (``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build-control-plane.sh")
DEFAULT_STATE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "httpsync" / "cluster"


class ControlPlaneError(RuntimeError):
    pass


def build_binaries(*, quiet: bool = False) -> Path:
    """Build (or find) kube-apiserver, etcd, kubectl and helm; return the folder holding them."""
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(f"{BUILD_SCRIPT} is missing; reinstall httpsync from a source checkout")
    if shutil.which("go") is None and not os.environ.get("KUBEBUILDER_ASSETS"):
        raise ControlPlaneError(
            "Go is not installed: the control plane is built from Go modules. Install Go >= 1.24 "
            "(apt-get install golang or https://go.dev/dl), or set KUBEBUILDER_ASSETS to a folder "
            "holding kube-apiserver, etcd and kubectl (setup-envtest use)."
        )
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"building the control plane failed (exit {proc.returncode}); run `bash {BUILD_SCRIPT}` to see why"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


WRITE_VERBS = frozenset({"POST", "PATCH", "PUT", "DELETE", "APPLY"})
HTTPSYNC_RESOURCES = frozenset({"httpsources", "httpendpointmappings", "events"})
_REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def apiserver_writes(
    metrics_text: str, resources: frozenset[str] = HTTPSYNC_RESOURCES
) -> Counter[tuple[str, str, str, str]]:
    """(resource, subresource, verb, code) -> write requests so far, read from the API server's own
    ``apiserver_request_total`` (the text of ``kubectl get --raw /metrics``), for ``resources``."""
    out: Counter[tuple[str, str, str, str]] = Counter()
    for line in metrics_text.splitlines():
        m = _REQUESTS.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m["labels"]))
        if labels.get("resource") in resources and labels.get("verb") in WRITE_VERBS:
            key = (labels["resource"], labels.get("subresource", ""), labels["verb"], labels.get("code", ""))
            out[key] += int(float(m["value"]))
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver. ``state`` holds data, keys, logs, pids and the kubeconfig."""

    state: Path
    bin_dir: Path
    api_port: int = 0
    etcd_port: int = 0

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    # ------------------------------------------------------------------ start

    def start(self, *, timeout: float = 120.0) -> ControlPlane:
        if (self.state / "pids.json").exists():
            raise ControlPlaneError(f"a cluster is already running from {self.state}: stop it first")
        self.state.mkdir(parents=True, exist_ok=True)
        pki = self.state / "pki"
        pki.mkdir(exist_ok=True)
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        token = uuid.uuid4().hex
        (pki / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
        os.chmod(pki / "tokens.csv", 0o600)
        self.etcd_port, peer_port = free_port(), free_port()
        self.api_port = free_port()
        pids: dict[str, int] = {}
        logs = self.state / "logs"
        logs.mkdir(exist_ok=True)
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        pids["etcd"] = self._spawn(
            "etcd",
            [
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        self._write_pids(pids)
        pids["kube-apiserver"] = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={pki}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer=https://127.0.0.1:{self.api_port}/",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--v=0",
            ],
            logs / "kube-apiserver.log",
        )
        self._write_pids(pids)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._write_kubeconfig(token)
        (self.state / "cluster.json").write_text(
            json.dumps({"server": self.server, "binDir": str(self.bin_dir), "apiPort": self.api_port})
        )
        return self

    def _spawn(self, binary: str, args: list[str], log: Path) -> int:
        exe = self.bin_dir / binary
        if not exe.exists():
            raise ControlPlaneError(f"{exe} not found; build it with `bash {BUILD_SCRIPT}`")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(exe), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives `httpsync cluster up` returning; stopped by pid
            )
        return proc.pid

    def _write_pids(self, pids: dict[str, int]) -> None:
        (self.state / "pids.json").write_text(json.dumps(pids))

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # readiness only; clients verify with the kubeconfig's CA
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, pid in self._pids().items():
                if not _alive(pid):
                    log = (self.state / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise ControlPlaneError(f"{name} exited during start-up; end of its log:\n{log}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # not up yet (connection refused, 500 while bootstrapping, 401)
                last = str(e)
            time.sleep(0.5)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    def _write_kubeconfig(self, token: str) -> None:
        ca = (self.state / "pki" / "apiserver.crt").read_text()
        import base64

        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "httpsync-dev",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "httpsync-dev", "context": {"cluster": "httpsync-dev", "user": "admin"}}],
            "current-context": "httpsync-dev",
        }
        self.kubeconfig.write_text(json.dumps(cfg, indent=2))
        os.chmod(self.kubeconfig, 0o600)

    # ------------------------------------------------------------------ stop

    def _pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads((self.state / "pids.json").read_text()).items()}
        except FileNotFoundError:
            return {}

    def stop(self, *, remove: bool = True) -> None:
        pids = self._pids()
        for name in ("kube-apiserver", "etcd"):
            pid = pids.get(name)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
        if remove:
            shutil.rmtree(self.state, ignore_errors=True)
        else:
            (self.state / "pids.json").unlink(missing_ok=True)

    @classmethod
    def load(cls, state: Path) -> ControlPlane:
        info = json.loads((state / "cluster.json").read_text())
        return cls(state=state, bin_dir=Path(info["binDir"]), api_port=int(info["apiPort"]))


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of another parent counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="httpsync cluster", description=__doc__.splitlines()[0])
    p.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"state folder (default {DEFAULT_STATE})"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find) the binaries and print their folder")
    sub.add_parser("up", help="start etcd + kube-apiserver on loopback and write a kubeconfig")
    sub.add_parser("down", help="stop the cluster and remove its state")
    sub.add_parser("env", help="print the export line for KUBECONFIG and PATH")
    args = p.parse_args(argv)
    state: Path = args.state
    try:
        if args.cmd == "build":
            print(build_binaries())
        elif args.cmd == "up":
            print(
                "building or finding the control-plane binaries (a first build takes 10-15 minutes)...",
                file=sys.stderr,
            )
            bins = build_binaries()
            cp = ControlPlane(state=state, bin_dir=bins).start()
            print(f"kube-apiserver ready at {cp.server} (etcd on 127.0.0.1:{cp.etcd_port})", file=sys.stderr)
            print(f"export KUBECONFIG={cp.kubeconfig} PATH={bins}:$PATH")
        elif args.cmd == "down":
            if not (state / "pids.json").exists():
                print(f"no cluster running from {state}", file=sys.stderr)
                shutil.rmtree(state, ignore_errors=True)
                return 0
            ControlPlane(state=state, bin_dir=Path()).stop()
            print("cluster stopped", file=sys.stderr)
        elif args.cmd == "env":
            cp = ControlPlane.load(state)
            print(f"export KUBECONFIG={cp.kubeconfig} PATH={cp.bin_dir}:$PATH")
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
