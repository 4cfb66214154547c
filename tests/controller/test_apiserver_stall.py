"""The API server stalls for longer than the operator's request timeout while every source is syncing:
the sync loops retry inside themselves (no kopf daemon crash and restart), every source comes back
Ready, and each keeps its own stable place in its interval (the schedules do not bunch up).

The operator reaches the real kube-apiserver through a loopback TCP proxy that can freeze: while
frozen no byte moves in either direction and new connections wait, as with an overloaded or
partitioned API server (TLS is end to end, so the proxy sees nothing but bytes).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from httpsync.controller.loop import phase_of
from httpsync.controller.objects import parse_iso
from tests.controller.harness import (  # noqa: F401
    TOKEN,
    Operator,
    api_fixture,
    apply,
    condition,
    mapping,
    secret,
    source,
    users,
    wait_for,
)
from tests.controller.itemsapi import ItemsApi

pytestmark = pytest.mark.cluster

INTERVAL = 30.0
API_TIMEOUT = "2s"


class FreezingProxy:
    """127.0.0.1:<port> -> the API server, byte for byte, until :meth:`freeze`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.flowing.wait()
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.thaw()
        self.listener.close()


@pytest.fixture
def proxy(kube: Any) -> Iterator[FreezingProxy]:
    server = urlsplit(json.loads(Path(kube.kubeconfig).read_text())["clusters"][0]["cluster"]["server"])
    p = FreezingProxy((server.hostname or "127.0.0.1", int(server.port or 443)))
    yield p
    p.close()


@pytest.fixture
def stalled_operator(kube: Any, proxy: FreezingProxy, tmp_path: Path) -> Iterator[Operator]:
    cfg = json.loads(Path(kube.kubeconfig).read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = tmp_path / "kubeconfig-via-proxy"
    kubeconfig.write_text(json.dumps(cfg))
    kubeconfig.chmod(0o600)
    op = Operator(kube, tmp_path, args=("--api-timeout", API_TIMEOUT), env={"KUBECONFIG": str(kubeconfig)})
    op.start()
    try:
        yield op
    finally:
        op.stop()


def test_a_stalled_api_server_is_retried_inside_the_loops(
    kube: Any, api: ItemsApi, proxy: FreezingProxy, stalled_operator: Operator
) -> None:
    op = stalled_operator
    ns = kube.new_namespace("stall")
    n = 6
    docs: list[dict[str, Any]] = [secret("api-creds", token=TOKEN)]
    for i in range(n):
        api.set_items(f"/{ns}/s{i}", users(f"{ns}-s{i}", 4))
        docs.append(source(f"src-{i}", api.url, interval=f"{int(INTERVAL)}s"))
        docs.append(mapping(f"map-{i}", f"src-{i}", f"/{ns}/s{i}"))
    api.token = TOKEN
    api.delay = 2.0  # 2 pages a sync: every first sync is still running when the API server stalls
    apply(kube, ns, *docs)

    def all_sources() -> list[dict[str, Any]]:
        objs = json.loads(kube.kubectl("get", "hsrc", "-n", ns, "-o", "json").stdout)["items"]
        assert len(objs) == n
        return list(objs)

    def all_syncing() -> bool:
        objs = all_sources()
        return all((condition(o, "Reconciling") or {}).get("status") == "True" for o in objs)

    wait_for(all_syncing, "every source's first sync under way", operator=op)
    frozen_at = time.time()
    proxy.freeze()
    time.sleep(12)  # several request timeouts and retries long
    proxy.thaw()
    api.delay = 0.0

    def all_ready_after_the_stall() -> list[dict[str, Any]] | None:
        objs = all_sources()
        for o in objs:
            ready = condition(o, "Ready") or {}
            synced = parse_iso(o.get("status", {}).get("lastSyncTime"))
            if ready.get("status") != "True" or synced is None or synced < frozen_at:
                return None
        return objs

    sources = wait_for(all_ready_after_the_stall, "every source Ready again after the stall", operator=op, timeout=90)
    log = op.log(tail=10**7)
    assert "(will retry)" in log, "the stall never reached the sync loops: the test proved nothing"
    assert "failed with an exception" not in log, "a sync loop crashed and was restarted by kopf"
    assert op.proc is not None and op.proc.poll() is None

    # Each source's next sync is on its own phase of the interval, as before the stall.
    for obj in sources:
        next_sync = parse_iso(obj["status"]["nextSyncTime"])
        assert next_sync is not None and next_sync > time.time() - 1
        phase = phase_of(obj["metadata"]["uid"], INTERVAL)
        offset = (next_sync - phase) % INTERVAL
        assert min(offset, INTERVAL - offset) <= 1.0, (obj["metadata"]["name"], offset)
    starts = sorted(parse_iso(o["status"]["nextSyncTime"]) or 0 for o in sources)
    phases = sorted(phase_of(o["metadata"]["uid"], INTERVAL) for o in sources)
    assert len({round(p) for p in phases}) > 1 and len({int(s) for s in starts}) > 1, "not all in one second"
