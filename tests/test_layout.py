"""The rooms of the package and who may import whom, read from the source (every import statement,
top-level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "operator" / "httpsync"
ROOMS = ("api", "engine", "http", "sinks", "state", "controller", "cli")

# room -> modules it must never import (prefixes)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "http": ("httpsync.engine", "httpsync.sinks", "httpsync.state", "httpsync.controller", "httpsync.cli",
             "kopf", "kubernetes_asyncio", "kubernetes"),
    "engine": ("httpsync.sinks", "httpsync.state", "httpsync.controller", "httpsync.cli",
               "kopf", "kubernetes_asyncio", "kubernetes"),
    "state": ("httpsync.sinks", "httpsync.controller", "httpsync.cli", "kopf", "kubernetes_asyncio"),
    "sinks": ("httpsync.controller", "httpsync.cli", "kopf", "kubernetes_asyncio"),
    "api": ("httpsync.engine", "httpsync.http", "httpsync.sinks", "httpsync.state", "httpsync.controller",
            "httpsync.cli", "kopf", "kubernetes_asyncio"),
    "controller": ("httpsync.cli",),
}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_room_exists() -> None:
    for room in ROOMS:
        assert (PACKAGE / room).is_dir(), f"operator/httpsync/{room}/ is missing"
    assert not (PACKAGE / "commands").exists() and not (PACKAGE / "local").exists()


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_import_rules(room: str) -> None:
    bad = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[room]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_rule_checker_sees_nested_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from httpsync.sinks.catalog import Catalog\n    import kopf\n")
    assert {"httpsync.sinks.catalog", "kopf"} <= imports_of(sample)
