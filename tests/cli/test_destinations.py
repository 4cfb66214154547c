"""``httpsync sync`` and ``httpsync preview`` apply the destination policy like ``httpsync run``:
the default deny list (cloud metadata addresses, in every spelling), ``--allow-destination`` and
``--deny-destination``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import DemoCopy, Run

Httpsync = Callable[..., Run]


@pytest.mark.parametrize("base", ["http://[::ffff:169.254.169.254]", "http://0xa9.0xfe.0xa9.0xfe"])
def test_the_cli_denies_metadata_addresses_by_default(
    httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path, base: str
) -> None:
    demo_copy.edit("source.yaml", f"http://127.0.0.1:{demo_copy.port}", base)
    r = httpsync("sync", "-f", demo_copy.dir, "--catalog", tmp_path / "c.db", "-o", "json")
    assert r.code == 1, r.err
    for result in r.json():
        assert result["reason"] == "DestinationDenied", result
        assert "denied by the operator's destination policy" in result["message"]
    p = httpsync("preview", "-f", demo_copy.dir, "-o", "json")
    assert p.code == 1 and all(x["reason"] == "DestinationDenied" for x in p.json()), p.out
    item = httpsync("preview", "-f", demo_copy.dir, "-o", "json", "--item", "1")
    assert item.code == 1 and all(x["reason"] == "DestinationDenied" for x in item.json()), item.out


def test_allow_and_deny_destination_flags(httpsync: Httpsync, demo_copy: DemoCopy, tmp_path: Path) -> None:
    catalog = tmp_path / "c.db"
    denied = httpsync(
        "sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", catalog, "-o", "json",
        "--deny-destination", "127.0.0.0/8",
    )  # fmt: skip
    assert denied.code == 1 and {r["reason"] for r in denied.json()} == {"DestinationDenied"}
    outside = httpsync(
        "preview", *demo_copy.demo_args(), "-f", demo_copy.dir, "-o", "json", "--allow-destination", "10.0.0.0/8"
    )
    assert outside.code == 1
    assert all("not in the operator's destination allow list" in x["message"] for x in outside.json())
    allowed = httpsync(
        "sync", *demo_copy.demo_args(), "-f", demo_copy.dir, "--catalog", catalog, "-o", "json",
        "--allow-destination", "127.0.0.0/8",
    )  # fmt: skip
    assert allowed.code == 0, allowed.out
