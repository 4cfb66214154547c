"""The Argo CD health check (charts/httpsync-operator/files/argocd-health.lua), run by a real Lua 5.1.

Argo CD runs health checks with gopher-lua (Lua 5.1): the live object is the global ``obj`` (JSON decoded
into tables, arrays 1-based) and the script returns ``{status=..., message=...}``. ``lupa.lua51`` gives the
same language; ``pip install lupa`` (a wheel with Lua bundled). docs/gitops.md must carry the same script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.status_cases import CASES, Case, cond, obj, st

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "charts" / "httpsync-operator" / "files" / "argocd-health.lua"
GITOPS_DOC = REPO / "docs" / "gitops.md"
KINDS = ("HttpSource", "HttpEndpointMapping")
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

try:
    from lupa import lua51
except ImportError:  # pragma: no cover - the failure message is the point
    lua51 = None


def run_health(obj_: dict[str, Any], script: str | None = None) -> dict[str, str]:
    """Run the health script the way Argo CD does: a fresh state, ``obj`` global, the returned table."""
    if lua51 is None:
        pytest.fail("the Argo CD health check needs a Lua interpreter: `.venv/bin/pip install lupa`", pytrace=False)
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj_, recursive=True)
    result = lua.execute(script if script is not None else SCRIPT.read_text())
    assert result is not None, "the health script returned nothing"
    out = dict(result.items())
    assert set(out) <= {"status", "message"}, out
    return {k: str(v) for k, v in out.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_health(case: Case) -> None:
    hs = run_health(case.obj)
    assert hs["status"] == case.argo, hs
    assert hs["status"] in ARGO_STATUSES
    assert hs.get("message"), "Argo CD shows the message: it should never be empty"
    if case.message is not None:
        assert hs["message"] == case.message


def test_unknown_condition_types_and_order_do_not_matter() -> None:
    base = st(cond("Synced", "False", "other"), cond("Stalled", "True", "stuck"), cond("Ready", "True", "ok"))
    assert run_health(obj(status=base))["status"] == "Degraded"
    reordered = st(cond("Ready", "False", "down"), cond("Foo", "True"), cond("Reconciling", "True", "again"))
    assert run_health(obj(status=reordered))["status"] == "Progressing"


def test_script_uses_only_lua51() -> None:
    """gopher-lua is Lua 5.1: no goto, no integer division, no bit operators, no utf8 library."""
    code = re.sub(r"--[^\n]*", "", SCRIPT.read_text())
    for construct in (r"\bgoto\b", r"//", r"::\w+::", r"\butf8\.", r"[^~<>=]~[^=]", r"<<|>>"):
        assert not re.search(construct, code), f"{construct} is not Lua 5.1"


def _argocd_cm_from_docs() -> dict[str, Any]:
    text = GITOPS_DOC.read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "argocd-cm":
            return doc
    pytest.fail("docs/gitops.md has no ```yaml block with the argocd-cm ConfigMap")


def test_docs_carry_the_same_script_for_both_kinds() -> None:
    cm = _argocd_cm_from_docs()
    script = SCRIPT.read_text()
    for kind in KINDS:
        key = f"resource.customizations.health.httpsync.io_{kind}"
        assert key in cm["data"], f"docs/gitops.md: argocd-cm lacks {key}"
        assert cm["data"][key] == script, f"docs/gitops.md: {key} differs from {SCRIPT.relative_to(REPO)}"
    # The documented script, as Argo CD would read it from the ConfigMap, runs.
    key = "resource.customizations.health.httpsync.io_HttpSource"
    ready = obj(status=st(cond("Ready", "True", "ok")))
    assert run_health(ready, cm["data"][key])["status"] == "Healthy"
