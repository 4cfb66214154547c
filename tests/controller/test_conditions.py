from __future__ import annotations

import time

from httpsync.controller.conditions import READY, RECONCILING, STALLED, Conditions


def test_ready_always_present_and_reconciling_stalled_exclusive() -> None:
    c = Conditions(None, 3)
    c.mark_reconciling("Progressing", "Syncing")
    c.mark_unknown("Progressing", "Waiting for the first sync")
    assert [x["type"] for x in c.to_list()] == [READY, RECONCILING]
    c.mark_not_ready("InvalidJq", "mappings.title: invalid jq", stalled=True)
    types = {x["type"]: x for x in c.to_list()}
    assert set(types) == {READY, STALLED}
    assert types[READY]["status"] == "False" and types[STALLED]["reason"] == "InvalidJq"
    assert all(x["observedGeneration"] == 3 for x in c.to_list())
    c.mark_ready("Succeeded", "Synced 3 entities")
    assert [x["type"] for x in c.to_list()] == [READY]


def test_last_transition_time_changes_only_with_status() -> None:
    old = [
        {
            "type": READY,
            "status": "True",
            "reason": "Succeeded",
            "message": "a",
            "lastTransitionTime": "2020-01-01T00:00:00Z",
        }
    ]
    c = Conditions(old, 1)
    c.mark_ready("Succeeded", "Synced 5 entities")
    assert c.get(READY)["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert c.get(READY)["message"] == "Synced 5 entities"
    c.mark_not_ready("HttpError", "GET x returned 500", stalled=False)
    assert c.get(READY)["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert c.get(READY)["lastTransitionTime"].startswith(time.strftime("%Y"))


def test_reasons_are_camel_case() -> None:
    c = Conditions(None, None)
    c.mark_not_ready("source not found!", "x", stalled=False)
    assert c.get(READY)["reason"] == "SourceNotFound"
    assert "observedGeneration" not in c.get(READY)
