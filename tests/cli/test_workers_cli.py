"""``httpsync sync`` maps pages in worker processes: a jq expression that never ends fails its mapping
with MappingTimeout after spec.mappingTimeoutSeconds, the other mappings still sync."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import DemoCopy, Run


def test_a_never_ending_mapping_times_out_and_the_rest_syncs(
    httpsync: Callable[..., Run], demo_copy: DemoCopy, tmp_path: Path
) -> None:
    demo_copy.edit("users.yaml", "title: .name", "title: 'until(false; .)'")
    demo_copy.edit("source.yaml", "  interval: 5m", "  interval: 5m\n  mappingTimeoutSeconds: 1")
    r = httpsync(
        "sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "-o", "json", "--workers", "1",
        "--catalog", tmp_path / "c.db",
    )  # fmt: skip
    assert r.code == 1, r.err
    results = {x["mapping"]: x for x in r.json()}
    users = results.pop("users")
    assert (users["outcome"], users["reason"]) == ("Failed", "MappingTimeout")
    assert "spec.mappingTimeoutSeconds (1s)" in users["message"] and "mappings.title (until)" in users["message"]
    assert all(x["outcome"] == "Succeeded" for x in results.values()), results
    assert "Traceback" not in r.err
