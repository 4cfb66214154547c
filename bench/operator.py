"""The operator at scale, on the real control plane (issue: thousands of mappings per replica).

    .venv/bin/python -m bench --only operator [--sources 500] [--large-items 300000]

Starts etcd + kube-apiserver (built from Go modules, as for the tests), a loopback API
(:mod:`bench.server`, 30 items a page for the small mappings; another with ``--large-items`` items for
one large source) and ``httpsync run`` in its own process, applies ``--sources`` HttpSources with 2
small mappings each (interval 60s), and reports:

- apply -> all Ready (every source Ready=True at its generation);
- the operator's RSS once all are Ready and after a full interval of steady state;
- operator CPU per mapping sync, over one interval of unchanged syncs (utime+stime of the process
  divided by the syncs counted by ``httpsync_syncs_total``);
- status writes per object per sync in that interval (``apiserver_request_total``, every write to the
  two kinds and Events, divided by the mapping syncs and their sources' syncs);
- the worst schedule drift: how late the last scheduled sync of each source started after its
  ``nextSyncTime`` (the operator's ``httpsync_schedule_drift_last_seconds``);
- the on-demand latency (annotate ``httpsync.io/requested-at`` -> ``lastHandledReconcileAt``) of a small
  source while the large source syncs.

Nothing here asserts: it prints figures and targets side by side, and returns them for results.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from bench.server import ServerProcess
from httpsync.devcluster.cluster import ControlPlane, apiserver_writes, build_binaries, free_port

REPO = Path(__file__).resolve().parent.parent
INTERVAL = 60
TARGETS = {"rssMiB5000": 400, "cpuMsPerSync": 5.0, "writesPerSync": 1.0}
_SYNCS = re.compile(r"^httpsync_syncs_total\{[^}]*\} (\S+)$", re.M)
_DRIFT = re.compile(r"^httpsync_schedule_drift_last_seconds\{[^}]*\} (\S+)$", re.M)


class Cluster:
    def __init__(self, state: Path) -> None:
        self.plane = ControlPlane(state=state, bin_dir=build_binaries(quiet=True))

    def __enter__(self) -> Cluster:
        self.plane.start()
        self.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/httpsources.httpsync.io",
                     "crd/httpendpointmappings.httpsync.io")  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.plane.stop()

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {"KUBECONFIG": str(self.plane.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            [str(self.plane.kubectl_path()), "--kubeconfig", str(self.plane.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr[-2000:]}")
        return proc.stdout

    def apply(self, docs: list[dict[str, Any]], ns: str) -> None:
        for i in range(0, len(docs), 400):  # kubectl apply of one big stream is slow to start; chunks
            self.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs[i : i + 400]))

    def writes(self) -> Counter[str]:
        """Writes to the two kinds (status included) and Events so far, by resource[/subresource]."""
        out: Counter[str] = Counter()
        for (resource, subresource, _, _), n in apiserver_writes(self.kubectl("get", "--raw", "/metrics")).items():
            out[f"{resource}/{subresource}" if subresource else resource] += n
        return out

    def sources(self, ns: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", "hsrc", "-n", ns, "-o", "json"))["items"])


class OperatorProcess:
    def __init__(self, cluster: Cluster, workdir: Path, profile: Path | None = None) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.log = workdir / "operator.log"
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        args = [
            sys.executable, *profiler, "-m", "httpsync.controller", "-A", "--catalog", str(workdir / "catalog.db"),
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
        ]  # fmt: skip
        env = cluster.env | {"HTTPSYNC_STATE": str(workdir / "state.db"), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the operator did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def syncs(self) -> float:
        return sum(float(v) for v in _SYNCS.findall(self._metrics()))

    def worst_drift(self) -> float | None:
        """The worst lateness of each source's last scheduled sync (httpsync_schedule_drift_last_seconds)."""
        values = [float(v) for v in _DRIFT.findall(self._metrics())]
        return max(values) if values else None


def manifests(n: int, url: str, large_url: str | None) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for s in range(n):
        name = f"src-{s:05d}"
        docs.append(source(name, url, page_size=100))
        for m in range(2):
            docs.append(mapping(f"{name}-m{m}", name, f"b{s}m{m}"))
    if large_url:
        docs.append(source("large", large_url, page_size=100))
        docs.append(mapping("large-m0", "large", "large"))
    return docs


def source(name: str, url: str, *, page_size: int) -> dict[str, Any]:
    return {
        "apiVersion": "httpsync.io/v1alpha1", "kind": "HttpSource", "metadata": {"name": name},
        "spec": {
            "baseUrl": url, "interval": f"{INTERVAL}s",
            "pagination": {"type": "page", "pageSize": page_size, "sizeParam": "size", "totalPath": ".total"},
        },
    }  # fmt: skip


def mapping(name: str, src: str, blueprint: str) -> dict[str, Any]:
    return {
        "apiVersion": "httpsync.io/v1alpha1", "kind": "HttpEndpointMapping", "metadata": {"name": name},
        "spec": {
            "sourceRef": {"name": src}, "kind": "/items", "selector": {"dataPath": ".items"},
            "mappings": {"identifier": ".id | tostring", "title": ".name", "blueprint": json.dumps(blueprint)},
        },
    }  # fmt: skip


def all_ready(cluster: Cluster, ns: str, expected: int) -> list[dict[str, Any]] | None:
    objs = cluster.sources(ns)
    ready = [
        o for o in objs
        if any(c["type"] == "Ready" and c["status"] == "True" for c in o.get("status", {}).get("conditions", []))
        and o["status"].get("observedGeneration") == o["metadata"]["generation"]
    ]  # fmt: skip
    return objs if len(ready) >= expected else None


def run(sources: int = 500, large_items: int = 300_000, profile: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"sources": sources, "mappings": sources * 2, "intervalSeconds": INTERVAL}
    ns = "bench"
    with tempfile.TemporaryDirectory(prefix="httpsync-bench-op-") as tmp, Cluster(Path(tmp) / "cluster") as cluster:
        with ServerProcess(items=30) as url, ServerProcess(items=large_items) as large_url:
            cluster.kubectl("create", "namespace", ns)
            op = OperatorProcess(cluster, Path(tmp), profile)
            try:
                out["rssIdleMiB"] = round(op.rss_mib(), 1)
                t0 = time.monotonic()
                cluster.apply(manifests(sources, url, None), ns)
                applied = time.monotonic() - t0
                while all_ready(cluster, ns, sources) is None:
                    time.sleep(1)
                out["applySeconds"] = round(applied, 1)
                out["applyToAllReadySeconds"] = round(time.monotonic() - t0, 1)
                out["rssAllReadyMiB"] = round(op.rss_mib(), 1)
                print(f"  {sources} sources ({2 * sources} mappings): all Ready {out['applyToAllReadySeconds']} s "
                      f"after apply; RSS {out['rssAllReadyMiB']} MiB", flush=True)  # fmt: skip

                # Steady state: one interval of unchanged syncs.
                cpu0, syncs0, writes0 = op.cpu_seconds(), op.syncs(), cluster.writes()
                time.sleep(INTERVAL + 5)
                cpu1, syncs1, writes1 = op.cpu_seconds(), op.syncs(), cluster.writes()
                syncs = max(1.0, syncs1 - syncs0)
                out["steadySyncs"] = int(syncs1 - syncs0)
                out["cpuMsPerSync"] = round((cpu1 - cpu0) * 1000 / syncs, 2)
                delta = writes1 - writes0
                # Objects synced: each mapping sync, and its source's once per 2 mappings.
                out["writesPerObjectSync"] = round(sum(delta.values()) / (syncs * 1.5), 3)
                out["writes"] = dict(delta)
                out["rssSteadyMiB"] = round(op.rss_mib(), 1)
                out["worstDriftSeconds"] = op.worst_drift()
                print(f"  steady state: {out['steadySyncs']} mapping syncs in {INTERVAL + 5} s, "
                      f"{out['cpuMsPerSync']} ms CPU per sync, "
                      f"{out['writesPerObjectSync']} writes per object per sync, "
                      f"RSS {out['rssSteadyMiB']} MiB, worst drift {out['worstDriftSeconds']} s",
                      flush=True)  # fmt: skip

                # On demand while a large source syncs.
                cluster.apply(manifests(0, url, large_url), ns)
                time.sleep(3)
                target = "src-00000"
                stamp = f"bench-{time.time():.0f}"
                t1 = time.monotonic()
                cluster.kubectl(
                    "annotate", "--overwrite", "-n", ns, f"hsrc/{target}", f"httpsync.io/requested-at={stamp}"
                )  # fmt: skip
                while True:
                    got = json.loads(cluster.kubectl("get", "-n", ns, f"hsrc/{target}", "-o", "json"))
                    if got.get("status", {}).get("lastHandledReconcileAt") == stamp:
                        break
                    time.sleep(0.2)
                out["onDemandSeconds"] = round(time.monotonic() - t1, 2)
                large = json.loads(cluster.kubectl("get", "-n", ns, "hem/large-m0", "-o", "json"))
                out["largeSyncDoneDuringOnDemand"] = bool(large.get("status", {}).get("lastSyncTime"))
                print(f"  on demand while a {large_items:,}-item source syncs: {out['onDemandSeconds']} s", flush=True)
            finally:
                op.stop()
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target, met) for the table of bench/__main__.py."""
    n = r.get("mappings", 0)
    rss_target = "< 400 MiB at 5,000 mappings" if n >= 5000 else f"(target < 400 MiB at 5,000; here {n:,})"
    return [
        (f"operator: {n:,} mappings apply -> all Ready", f"{r.get('applyToAllReadySeconds')} s", "", None),
        ("operator: RSS, steady", f"{r.get('rssSteadyMiB')} MiB", rss_target,
         r.get("rssSteadyMiB", 1e9) < TARGETS["rssMiB5000"] if n >= 5000 else None),
        ("operator: CPU per unchanged mapping sync", f"{r.get('cpuMsPerSync')} ms", "< 5 ms",
         r.get("cpuMsPerSync", 1e9) < TARGETS["cpuMsPerSync"]),
        ("operator: status writes per object per sync", f"{r.get('writesPerObjectSync')}", "<= 1",
         r.get("writesPerObjectSync", 1e9) <= TARGETS["writesPerSync"] + 0.01),
        ("operator: worst schedule drift (last sync of each source)", f"{r.get('worstDriftSeconds')} s",
         "< one sync slot", None),
        ("operator: on-demand sync while a large source syncs", f"{r.get('onDemandSeconds')} s", "", None),
    ]  # fmt: skip
