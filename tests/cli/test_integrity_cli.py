"""The ``httpsync`` console script on one catalog: two mappings producing the same entity (issue 11
§2, ownership conflicts) and two overlapping syncs of one mapping."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from httpsync.sinks import Catalog
from tests.cli.conftest import HTTPSYNC
from tests.loopback import LoopbackServer

SOURCE = """
apiVersion: httpsync.io/v1alpha1
kind: HttpSource
metadata: {{name: api, namespace: {ns}}}
spec:
  baseUrl: {url}
  retry: {{maxRetries: 0}}
"""

MAPPING = """
apiVersion: httpsync.io/v1alpha1
kind: HttpEndpointMapping
metadata: {{name: {name}, namespace: {ns}}}
spec:
  sourceRef: {{name: api}}
  kind: /{name}
  selector: {{query: "true"}}
  mappings:
    identifier: .id
    blueprint: '"item"'
    title: .title
"""


class Api(LoopbackServer):
    """``GET /<name>``: the items in ``data[name]``."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, Any]]] = {}
        self.gate: asyncio.Event | None = None  # requests wait for it
        self.waiting = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{name}", self._get)
        super().__init__(app)

    async def _get(self, request: web.Request) -> web.Response:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        return web.json_response(self.data[request.match_info["name"]])


async def httpsync(*args: str | Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HTTPSYNC_CATALOG"}
    proc = await asyncio.create_subprocess_exec(
        str(HTTPSYNC), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_manifests(directory: Path, url: str, mappings: list[tuple[str, str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for ns in {ns for ns, _ in mappings}:
        (directory / f"source-{ns}.yaml").write_text(SOURCE.format(ns=ns, url=url))
    for ns, name in mappings:
        (directory / f"{ns}-{name}.yaml").write_text(MAPPING.format(ns=ns, name=name))


async def titles(path: Path) -> dict[str, str]:
    async with await Catalog.open(path, create=False) as c:
        return {e["identifier"]: e["title"] for e in await c.sink.list_entities()}


async def test_an_entity_two_mappings_produce_stays_while_one_still_does(tmp_path: Path) -> None:
    catalog = tmp_path / "c.db"
    async with Api() as api:
        api.data["alpha"] = [{"id": "X", "title": "x"}, {"id": "A", "title": "a"}]
        api.data["beta"] = [{"id": "X", "title": "x"}, {"id": "B", "title": "b"}]
        write_manifests(tmp_path / "m", api.url, [("team-a", "alpha"), ("team-b", "beta")])
        args = ("sync", "-f", tmp_path / "m", "--catalog", catalog, "-o", "json")

        code, out, err = await httpsync(*args)
        assert code == 0, err
        code, out, err = await httpsync(*args)  # both have synced once: each knows the other
        results = {r["mapping"]: r for r in json.loads(out)}
        for me, other in (("alpha", "team-b/beta"), ("beta", "team-a/alpha")):
            r = results[me]
            assert (r["outcome"], r["entities"], r["entitiesConflicting"]) == ("Succeeded", 2, 1), r
            assert any(f"item/X is also produced by {other}" in s for s in r["mappingErrorSamples"]), r
        assert await titles(catalog) == {"A": "a", "B": "b", "X": "x"}

        api.data["beta"] = [{"id": "B", "title": "b"}]  # beta drops X; alpha still produces it
        code, out, err = await httpsync(*args)
        assert code == 0, err
        results = {r["mapping"]: r for r in json.loads(out)}
        assert (results["beta"]["entities"], results["beta"]["entitiesDeleted"]) == (1, 0), results["beta"]
        assert await titles(catalog) == {"A": "a", "B": "b", "X": "x"}
        for _ in range(2):  # and it stays, sync after sync; alpha counts it (true of the catalog)
            code, out, err = await httpsync(*args)
            results = {r["mapping"]: r for r in json.loads(out)}
            assert results["alpha"]["entities"] == 2 and results["alpha"]["entitiesConflicting"] == 0
            assert await titles(catalog) == {"A": "a", "B": "b", "X": "x"}

        api.data["alpha"] = [{"id": "A", "title": "a"}]  # now nobody produces X: it goes
        code, out, err = await httpsync(*args)
        results = {r["mapping"]: r for r in json.loads(out)}
        assert results["alpha"]["entitiesDeleted"] == 1, results["alpha"]
        assert await titles(catalog) == {"A": "a", "B": "b"}


async def test_two_overlapping_syncs_on_one_catalog_never_delete_live_entities(tmp_path: Path) -> None:
    catalog = tmp_path / "c.db"
    async with Api() as api:
        api.data["alpha"] = [{"id": f"e{i}", "title": "t"} for i in range(2000)]
        write_manifests(tmp_path / "m", api.url, [("default", "alpha")])
        args = ("sync", "-f", tmp_path / "m", "--catalog", catalog, "-o", "json")
        code, out, err = await httpsync(*args)
        assert code == 0, err

        api.gate = asyncio.Event()  # the next sync holds the mapping's state while its request waits
        first = asyncio.create_task(httpsync(*args))
        await asyncio.wait_for(api.waiting.wait(), 60)
        code, out, err = await httpsync(*args)  # waits briefly for the lease, then gives up
        (r,) = json.loads(out)
        assert code != 0 and (r["outcome"], r["reason"], r["entitiesDeleted"]) == ("Failed", "SyncInProgress", 0), r
        assert "another sync of default/alpha is running" in r["message"]
        api.gate.set()
        code, out, err = await first
        assert code == 0, err
        (r,) = json.loads(out)
        assert (r["entitiesUnchanged"], r["entitiesDeleted"]) == (2000, 0), r
        assert len(await titles(catalog)) == 2000
