"""kstatus over the status fixtures of status_cases.py.

There is no kstatus command line to run, so this is a Python TRANSCRIPTION, not the real library:

- ``compute_upstream`` transcribes ``status.Compute`` of sigs.k8s.io/cli-utils/pkg/kstatus/status for a custom
  resource (generic.go ``checkGenericProperties``/``checkGeneration`` and the fallback in status.go):
  deletionTimestamp -> Terminating; ``status.observedGeneration`` present and != ``metadata.generation`` ->
  InProgress; then the conditions in list order, the first ``Reconciling=True`` -> InProgress or
  ``Stalled=True`` -> Failed; otherwise Current (custom resources have no type-specific rules, Ready is not read).
- ``compute`` adds the Ready rule of ../shared/reference/operator-conventions.md ("else Ready True -> Current,
  False/Unknown -> InProgress; no status at all counts as Current").

The two differ for a resource that is Ready=False without Reconciling or Stalled (a failed sync that will be
retried): upstream kstatus calls it Current. The fixtures record both so that the difference stays visible.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.packaging.status_cases import CASES, Case, cond, obj, st

KSTATUS = {"InProgress", "Failed", "Current", "Terminating"}


def compute_upstream(o: dict[str, Any]) -> str:
    metadata = o.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    generation = metadata.get("generation")
    if generation is not None and "observedGeneration" in status and status["observedGeneration"] != generation:
        return "InProgress"
    for c in status.get("conditions") or []:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return "InProgress"
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return "Failed"
    return "Current"


def compute(o: dict[str, Any]) -> str:
    result = compute_upstream(o)
    if result != "Current":
        return result
    ready = next((c for c in (o.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return "InProgress"
    return "Current"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kstatus_with_ready_rule(case: Case) -> None:
    assert compute(case.obj) == case.kstatus
    assert case.kstatus in KSTATUS


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_upstream_kstatus(case: Case) -> None:
    assert compute_upstream(case.obj) == case.upstream_kstatus


def test_upstream_reads_conditions_in_list_order() -> None:
    # Never written by the operator (marking one removes the other), but pins the transcription.
    both = st(cond("Stalled", "True"), cond("Reconciling", "True"))
    assert compute_upstream(obj(status=both)) == "Failed"
    assert compute_upstream(obj(status=st(cond("Reconciling", "True"), cond("Stalled", "True")))) == "InProgress"


def test_every_operator_written_state_that_is_not_final_is_not_current() -> None:
    """What the operator writes before and during a sync is never Current (GitOps would stop waiting)."""
    for case in CASES:
        if case.id.startswith("operator-") and case.argo == "Progressing":
            assert compute(case.obj) == "InProgress", case.id
            assert compute_upstream(case.obj) == "InProgress", case.id
