"""Start-up cost of the CLI: a command imports only what it runs. `httpsync --help` and the local
commands never import kopf, the Kubernetes client or aiohttp (the operator's and the demo API's)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from httpsync.cli.main import COMMANDS, build_parser

HEAVY = ("kopf", "kubernetes_asyncio", "aiohttp")
PROBE = """
import json, sys
from httpsync.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})), file=sys.stderr)
"""


def heavy_modules_loaded(*argv: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *argv], capture_output=True, text=True, timeout=60
    )
    return list(json.loads(proc.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",), ("sync", "--help"), ("preview", "--help"), ("import", "ocean", "--help"),
        ("catalog", "list", "--catalog", "{tmp}/c.db"),
    ],
)
def test_local_commands_do_not_import_the_operator(argv: tuple[str, ...], tmp_path: Path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert heavy_modules_loaded(*args) == []


def test_run_still_gets_its_operator_options() -> None:
    assert "kopf" in heavy_modules_loaded("run", "--help")


def test_the_help_lines_are_the_commands_own() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {name: help_ for name, (_, help_) in COMMANDS.items()}
