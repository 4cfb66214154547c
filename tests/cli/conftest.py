"""Fixtures of the CLI tests: the real ``httpsync`` console script, run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "port-overview"
HTTPSYNC = Path(sys.executable).parent / "httpsync"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_httpsync(
    *args: str | Path, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> Run:
    env = {**{k: v for k, v in os.environ.items() if k != "HTTPSYNC_CATALOG"}, **(env or {})}
    proc = subprocess.run(
        [str(HTTPSYNC), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoCopy:
    """examples/port-overview copied to a temporary directory, pointed at its own port."""

    dir: Path
    port: int

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.dir / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))

    def demo_args(self) -> list[str]:
        return ["--demo-api", "--demo-api-port", str(self.port)]


@pytest.fixture
def httpsync() -> Callable[..., Run]:
    assert HTTPSYNC.exists(), f"{HTTPSYNC} is missing: pip install -e . in the venv"
    return run_httpsync


@pytest.fixture
def demo_copy(tmp_path: Path) -> DemoCopy:
    port = free_port()
    target = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, target)
    copy = DemoCopy(target, port)
    copy.edit("source.yaml", "http://127.0.0.1:18080", f"http://127.0.0.1:{port}")
    # Fail fast when nothing listens: no retries.
    copy.edit("source.yaml", "  interval: 5m", "  interval: 5m\n  retry:\n    maxRetries: 0")
    return copy
