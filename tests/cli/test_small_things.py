"""Issue 11 §5 through the real console script: no tracebacks, exit codes as the README promises,
messages that agree with the counts, and API data that cannot drive the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.cli.conftest import DemoCopy, Run
from tests.loopback import LoopbackServer

Httpsync = Callable[..., Run]


def test_catalog_list_on_a_file_that_is_not_a_database(httpsync: Httpsync, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a catalog\n" * 200)
    r = httpsync("catalog", "list", "--catalog", path)
    assert r.code == 1
    assert "Traceback" not in r.err
    assert r.err.strip().splitlines() == [
        f"httpsync: cannot read the catalog {path}: file is not a database (is it an httpsync catalog?)"
    ]


@pytest.mark.parametrize(
    ("base", "why"), [("http://[::1", "Invalid IPv6 URL"), ("http://127.0.0.1:99999", "Port out of range")]
)
@pytest.mark.parametrize("command", ["sync", "preview"])
def test_an_unparsable_base_url_is_an_invalid_manifest(
    httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path, base: str, why: str, command: str
) -> None:
    demo_copy.edit("source.yaml", f"http://127.0.0.1:{demo_copy.port}", base)
    extra = ["--catalog", tmp_path / "c.db"] if command == "sync" else []
    r = httpsync(command, "-f", demo_copy.dir, *extra)
    assert r.code == 2, (r.out, r.err)
    assert "Traceback" not in r.err
    assert f"source.yaml: HttpSource demo-api: spec.baseUrl {base!r} is not a valid URL: {why}" in r.err
    assert not (tmp_path / "c.db").exists()


def test_max_pages_message_and_counts_agree(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    demo_copy.edit("source.yaml", "    pageSize: 25", "    pageSize: 2\n    maxPages: 3")
    r = httpsync("sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", tmp_path / "c.db", "-o", "json")
    assert r.code == 1
    users = next(x for x in r.json() if x["mapping"] == "users")
    assert users["reason"] == "PaginationLoop"
    assert users["message"].startswith("stopped after 3 pages (maxPages)")
    assert users["itemsFetched"] == 3 * 2  # the third page's items too


# --------------------------------------------------------------------------- terminal control characters

ESC_ITEMS = [
    {"id": "evil\x1b[2J\x1b[31m", "name": "\x1b]0;owned title\x07bell", "note": "c1\x9b31m bidi\u202eright"},
    {"id": "plain", "name": "fine", "note": "ok"},
]


class EscApi(LoopbackServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/items", self._items)
        app.router.add_get("/broken", self._broken)
        super().__init__(app)

    async def _items(self, request: web.Request) -> web.Response:
        return web.json_response(ESC_ITEMS)

    async def _broken(self, request: web.Request) -> web.Response:
        return web.Response(status=400, text="bad \x1b[31mred\x1b[0m request")


MANIFEST = """\
apiVersion: httpsync.io/v1alpha1
kind: HttpSource
metadata: {{name: esc}}
spec:
  baseUrl: {url}
  retry: {{maxRetries: 0}}
---
apiVersion: httpsync.io/v1alpha1
kind: HttpEndpointMapping
metadata: {{name: items}}
spec:
  sourceRef: {{name: esc}}
  kind: /items
  mappings:
    identifier: .id
    title: .name
    blueprint: '"x"'
    properties: {{note: .note}}
---
apiVersion: httpsync.io/v1alpha1
kind: HttpEndpointMapping
metadata: {{name: broken}}
spec:
  sourceRef: {{name: esc}}
  kind: /broken
  mappings: {{identifier: .id, blueprint: '"x"'}}
"""

TERMINAL_ACTIVE = ("\x1b", "\x07", "\x9b", "\u202e")


async def cli(*args: Any) -> tuple[int, str, str]:
    exe = Path(sys.executable).parent / "httpsync"
    proc = await asyncio.create_subprocess_exec(
        str(exe), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_control_characters_from_the_api_are_escaped(tmp_path: Path) -> None:
    async with EscApi() as api:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(MANIFEST.format(url=api.url))
        catalog = tmp_path / "c.db"
        runs = {
            "sync": await cli("-v", "sync", "-f", manifest, "--catalog", catalog),
            "list": await cli("catalog", "list", "--catalog", catalog),
            "list-json": await cli("catalog", "list", "--catalog", catalog, "-o", "json"),
            "preview": await cli("preview", "-f", manifest, "-o", "table"),
            "preview-yaml": await cli("preview", "-f", manifest),
        }
    for name, (code, out, err) in runs.items():
        assert code in (0, 1), (name, out, err)
        for c in TERMINAL_ACTIVE:
            assert c not in out and c not in err, (name, repr(c), out, err)
    assert "bad \\x1b[31mred\\x1b[0m request" in runs["sync"][1]  # the error body, shown escaped
    assert "evil\\x1b[2J\\x1b[31m" in runs["list"][1] and "\\x07bell" in runs["list"][1]
    assert "evil\\x1b[2J\\x1b[31m" in runs["preview"][1]
    listed = json.loads(runs["list-json"][1])  # still the data, exactly, once parsed
    assert {d["identifier"] for d in listed} == {"evil\x1b[2J\x1b[31m", "plain"}
    assert any(d["properties"]["note"] == "c1\x9b31m bidi\u202eright" for d in listed)
