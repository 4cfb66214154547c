"""``httpsync preview`` as a mapping workbench: ``--item N`` (one raw item next to its entity, every
field's own value or error), errors under their field, and ``--watch`` re-running on file changes.
All against the loopback test API, through the real console script."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.conftest import HTTPSYNC, Run
from tests.testapi.server import USERS

SAFETY = 60  # seconds; only so that a broken build cannot hang the run


def write_manifests(directory: Path, base_url: str, mappings: dict[str, Any], **spec: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    source = {
        "apiVersion": "httpsync.io/v1alpha1",
        "kind": "HttpSource",
        "metadata": {"name": "api"},
        "spec": {"baseUrl": base_url, "pagination": {"type": "offset", "pageSize": 20}, "retry": {"maxRetries": 0}},
    }
    mapping = {
        "apiVersion": "httpsync.io/v1alpha1",
        "kind": "HttpEndpointMapping",
        "metadata": {"name": "users"},
        "spec": {
            "sourceRef": {"name": "api"},
            "kind": "/api/offset/users",
            "selector": {"dataPath": ".data"},
            "mappings": mappings,
            **spec,
        },
    }
    (directory / "source.yaml").write_text(yaml.safe_dump(source))
    (directory / "users.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return directory


MAPPINGS = {
    "identifier": ".id",
    "blueprint": '"user"',
    "title": ".name",
    "properties": {"broken": ".name | .first", "score": ".score", "missing": ".nope"},
}


async def httpsync_async(*args: str | Path) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(HTTPSYNC), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), SAFETY)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_item_shows_the_raw_item_and_each_fields_value_or_error(testapi: Any, tmp_path: Path) -> None:
    files = write_manifests(tmp_path / "m", testapi.url, MAPPINGS)
    r = await httpsync_async("preview", "-f", files, "--item", "25", "-o", "json")  # on the second page
    assert r.code == 0, r.err
    [doc] = r.json()
    user = USERS[24]
    assert doc["raw"] == user
    assert doc["outcome"] == "Succeeded"
    # What sync makes of it: the item fails on its first bad field.
    assert doc["entities"] == []
    assert doc["errors"] == ['mappings.properties.broken: Cannot index string with string ("first")']
    # Every field on its own: the others still show their values.
    fields = doc["units"][0]["fields"]
    assert fields == {
        "identifier": {"value": str(user["id"])},
        "blueprint": {"value": "user"},
        "title": {"value": user["name"]},
        "properties.broken": {"error": 'Cannot index string with string ("first")'},
        "properties.score": {"value": user["score"]},
        "properties.missing": {"value": None},
    }
    assert doc["units"][0]["query"] == {"value": True}

    table = await httpsync_async("preview", "-f", files, "--item", "25", "-o", "table")
    lines = table.out.splitlines()
    assert lines[0] == "users (/api/offset/users): item 25 -> 0 entities"
    assert lines[1].split() == ["RAW", "ITEM", "|", "ENTITY"]
    right = [line.split("| ", 1)[1] if "| " in line else "" for line in lines[2:]]
    at = right.index("properties.broken:")
    assert right[at + 1] == '  error: Cannot index string with string ("first")'  # under its field
    assert f'"name": "{user["name"]}",' in lines[2 + at - 2] + lines[2 + at - 1] + lines[2 + at] + lines[2 + at + 1]


async def test_item_with_items_to_parse_and_a_filter(testapi: Any, tmp_path: Path) -> None:
    mappings = {"identifier": '.item + "-" + (.id | tostring)', "blueprint": '"tag"', "title": ".item"}
    files = write_manifests(tmp_path / "m", testapi.url, mappings, itemsToParse='[.name, "x"]')
    r = await httpsync_async("preview", "-f", files, "--item", "3", "-o", "json")
    assert r.code == 0, r.err
    [doc] = r.json()
    name = USERS[2]["name"]
    assert [e["identifier"] for e in doc["entities"]] == [f"{name}-3", "x-3"]
    assert [u["fields"]["title"] for u in doc["units"]] == [{"value": name}, {"value": "x"}]

    filtered = write_manifests(tmp_path / "f", testapi.url, MAPPINGS)
    text = (filtered / "users.yaml").read_text().replace("dataPath: .data", "dataPath: .data\n    query: .score > 5000")
    (filtered / "users.yaml").write_text(text)
    r = await httpsync_async("preview", "-f", filtered, "--item", "1", "-o", "table")
    assert "selector.query: false (filtered out)" in r.out
    assert r.out.splitlines()[0].endswith("-> 0 entities, filtered")


async def test_an_item_past_the_end_fails_clearly(testapi: Any, tmp_path: Path) -> None:
    files = write_manifests(tmp_path / "m", testapi.url, MAPPINGS)
    r = await httpsync_async("preview", "-f", files, "--item", str(len(USERS) + 1), "-o", "table")
    assert r.code == 1
    assert f"Failed (NoSuchItem): the endpoint has {len(USERS)} items" in r.out
    bad = await httpsync_async("preview", "-f", files, "--item", "0")
    assert bad.code == 2 and "httpsync: --item counts from 1" in bad.err


async def test_table_errors_are_grouped_under_their_field(testapi: Any, tmp_path: Path) -> None:
    mappings = {**MAPPINGS, "properties": {"broken": "if .id <= 6 and .id % 2 == 0 then .name | .first else 1 end"}}
    mappings["team"] = "if .id <= 6 and .id % 2 == 1 then .name.x else null end"
    files = write_manifests(tmp_path / "m", testapi.url, mappings)
    r = await httpsync_async("preview", "-f", files, "--limit", "3", "-o", "table")
    assert r.code == 0, r.err
    tail = r.out.splitlines()
    at = tail.index("  mappings.team: 3 errors")
    assert tail[at + 1] == '    Cannot index string with string ("x") (3 items)'
    at = tail.index("  mappings.properties.broken: 3 errors")
    assert tail[at + 1] == '    Cannot index string with string ("first") (3 items)'


async def _read_until(stream: asyncio.StreamReader, marker: str) -> str:
    text = ""
    while marker not in text:
        line = await asyncio.wait_for(stream.readline(), SAFETY)
        assert line, f"the watch ended before {marker!r}; got {text!r}"
        text += line.decode()
    return text


def _preview_json(text: str) -> Any:
    body = text.split("---\n", 1)[1] if text.startswith("---") else text
    body = body[body.index("\n") + 1 :] if body.startswith("--- preview") else body
    start = body.index("[")
    return json.loads(body[start : body.rindex("]") + 1])


async def test_watch_reruns_when_the_manifest_changes(testapi: Any, tmp_path: Path) -> None:
    files = write_manifests(tmp_path / "m", testapi.url, MAPPINGS)
    proc = await asyncio.create_subprocess_exec(
        str(HTTPSYNC), "preview", "-f", files, "--item", "1", "-o", "json", "--watch", "--watch-interval", "0.05",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await _read_until(proc.stdout, "--- watching")
        assert "--- preview 1 " in first
        assert _preview_json(first)[0]["units"][0]["fields"]["title"] == {"value": USERS[0]["name"]}

        users = files / "users.yaml"
        users.write_text(users.read_text().replace("title: .name", "title: .email"))
        second = await _read_until(proc.stdout, "--- watching")
        assert "--- preview 2 " in second
        assert _preview_json(second)[0]["units"][0]["fields"]["title"] == {"value": USERS[0]["email"]}

        users.write_text(users.read_text().replace("title: .email", "titel: .email"))  # invalid: keeps watching
        third = await _read_until(proc.stdout, "--- watching")
        assert "--- preview 3 " in third and "[" not in third
        problem = await asyncio.wait_for(proc.stderr.readline(), SAFETY)
        assert b"spec.mappings.titel: unknown field" in problem

        users.write_text(users.read_text().replace("titel: .email", "title: .id"))
        fourth = await _read_until(proc.stdout, "--- watching")
        assert _preview_json(fourth)[0]["units"][0]["fields"]["title"] == {"value": USERS[0]["id"]}
        assert proc.returncode is None  # still watching
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.parametrize("value", ["-1", "0"])
def test_watch_interval_must_be_positive(value: str, tmp_path: Path) -> None:
    import subprocess

    files = write_manifests(tmp_path / "m", "http://127.0.0.1:9", MAPPINGS)
    proc = subprocess.run(
        [str(HTTPSYNC), "preview", "-f", str(files), "--watch", "--watch-interval", value],
        capture_output=True,
        text=True,
        timeout=SAFETY,
    )
    assert proc.returncode == 2 and "--watch-interval must be more than 0" in proc.stderr
