"""examples/cronjob/: the manifests its ConfigMap and Secret carry load and compile, and the CronJob's
own command, run as its pod runs it (the same arguments and environment, the Port emulator for Port
and the bundled demo API for the quickstart's), syncs them into Port. The server-side dry run of the
folder is tests/examples/test_examples.py (cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from httpsync.cli.common import check_mappings
from httpsync.cli.manifests import load_manifests
from tests.portapi import server
from tests.portapi.fixtures import portapi  # noqa: F401
from tests.portapi.server import PortApi

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "examples" / "cronjob"
HTTPSYNC = Path(sys.executable).parent / "httpsync"
QUICKSTART_URL = "http://demo-api.httpsync-quickstart.svc:18080"


def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for f in sorted(FOLDER.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                out[f"{d['kind']}/{d['metadata']['name']}"] = d
    return out


def mounted(tmp_path: Path, demo_url: str = QUICKSTART_URL) -> tuple[Path, Path]:
    """The ConfigMap and the manifest Secret as their volumes show them (/manifests, /secrets)."""
    d = docs()
    manifests, secrets = tmp_path / "manifests", tmp_path / "secrets"
    manifests.mkdir()
    secrets.mkdir()
    for name, text in d["ConfigMap/httpsync-to-port-manifests"]["data"].items():
        (manifests / name).write_text(text.replace(QUICKSTART_URL, demo_url))
    for name, text in d["Secret/httpsync-to-port-secrets"]["stringData"].items():
        (secrets / name).write_text(text)
    return manifests, secrets


def container() -> dict[str, Any]:
    cronjob = docs()["CronJob/httpsync-to-port"]
    (c,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return c


def test_the_mounted_manifests_load_and_compile(tmp_path: Path) -> None:
    manifests = load_manifests(list(mounted(tmp_path)))
    assert manifests.sources and manifests.mappings
    check_mappings(manifests, manifests.mappings)
    assert not manifests.notes


def test_the_cronjob_runs_httpsync_sync_into_port() -> None:
    c = container()
    assert c["args"][:1] == ["sync"] and "--sink" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HTTPSYNC_PORT_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "port-credentials",
        "key": "clientSecret",
    }
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/manifests", "/secrets", "/var/lib/httpsync"} <= mounts


async def run_pod(run_dir: Path, api: PortApi, demo_port: int, data: Path) -> tuple[int, str, str]:
    """The container's args and env, as its pod runs them (its volumes under ``run_dir``, its data
    volume ``data``)."""
    c = container()
    manifests, secrets = mounted(run_dir, f"http://127.0.0.1:{demo_port}")
    args = [str(manifests) if a == "/manifests" else str(secrets) if a == "/secrets" else a for a in c["args"]]
    keys = {"clientId": server.CLIENT_ID, "clientSecret": server.CLIENT_SECRET}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPSYNC_")}
    for e in c["env"]:
        env[e["name"]] = keys[e["valueFrom"]["secretKeyRef"]["key"]] if "valueFrom" in e else e["value"]
    env["HTTPSYNC_PORT_BASE_URL"] = api.url
    env["HTTPSYNC_CATALOG"] = str(data / "catalog.db")  # the image's: on the data volume
    env["HTTPSYNC_STATE"] = str(data / "state.db")
    proc = await asyncio.create_subprocess_exec(
        str(HTTPSYNC), *args, "--demo-api", "--demo-api-port", str(demo_port), "-o", "json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_cronjob_run_lands_in_port(portapi: PortApi, tmp_path: Path) -> None:  # noqa: F811
    from tests.cli.conftest import free_port

    run_dir, data = tmp_path / "run", tmp_path / "data"
    run_dir.mkdir()
    data.mkdir()
    code, out, err = await run_pod(run_dir, portapi, free_port(), data)
    assert code == 0, (out, err)
    results = {r["mapping"]: r for r in json.loads(out)}
    assert set(results) == {"projects", "users"}
    assert portapi.state.count("project") == results["projects"]["entities"] > 0
    assert portapi.state.count("user") == results["users"]["entities"] > 0
    agents = {r.headers["user-agent"].split("/", 2)[2] for r in portapi.state.bulk_upserts()}
    assert agents == {"default/projects/exporter", "default/users/exporter"}  # httpsync/<version>/...
    assert server.CLIENT_SECRET not in out + err
