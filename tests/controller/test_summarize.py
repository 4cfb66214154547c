"""The pure summarize step: outcomes of a sync -> the status models the patch step writes."""

from __future__ import annotations

from typing import Any

from httpsync.api.models import SOURCE_SUMMARY_MAX, EndpointResult
from httpsync.controller.objects import MappingObject, SourceObject
from httpsync.controller.patch import wire
from httpsync.controller.summarize import (
    MappingOutcome,
    mapping_first_contact,
    mapping_synced,
    source_first_contact,
    source_progressing,
    source_suspended,
    source_synced,
)
from httpsync.errors import ConfigError, HttpStatusError, InvalidJqError, SecretError

NOW = "2026-12-04T12:00:00Z"
EARLIER = "2026-12-04T11:00:00Z"


def source(generation: int = 2, status: dict[str, Any] | None = None, requested: str | None = None) -> SourceObject:
    meta: dict[str, Any] = {"name": "api", "namespace": "ns", "uid": "u1", "generation": generation}
    if requested:
        meta["annotations"] = {"httpsync.io/requested-at": requested}
    return SourceObject.from_body({"metadata": meta, "spec": {"baseUrl": "http://127.0.0.1:1"}, "status": status or {}})


def mapping(name: str = "users", generation: int = 1, status: dict[str, Any] | None = None) -> MappingObject:
    spec = {
        "sourceRef": {"name": "api"},
        "kind": "/users",
        "mappings": {"identifier": ".id", "blueprint": '"user"'},
    }
    body = {"metadata": {"name": name, "namespace": "ns", "uid": "u2", "generation": generation}, "spec": spec}
    return MappingObject.from_body({**body, "status": status or {}})


def result(**counts: Any) -> EndpointResult:
    r = EndpointResult(mapping="users", kind="/users")
    for k, v in counts.items():
        setattr(r, k, v)
    return r


def cond(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def ready_condition(reason: str, status: str = "True") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": "m", "lastTransitionTime": EARLIER}


def test_a_successful_mapping_is_ready_with_counts_and_entity_count() -> None:
    out = wire(mapping_synced(MappingOutcome(mapping(), result(entities_upserted=3, entities_unchanged=2,
                                                               items_fetched=6, items_filtered=1)), NOW))  # fmt: skip
    assert out["observedGeneration"] == 1 and out["lastSyncTime"] == NOW == out["lastSuccessfulSyncTime"]
    assert out["entityCount"] == 5
    assert out["lastSync"]["entitiesUpserted"] == 3 and out["lastSync"]["entitiesUnchanged"] == 2
    ready = cond(out, "Ready")
    assert ready is not None and ready["status"] == "True" and ready["reason"] == "Succeeded"
    assert ready["message"] == "Synced 5 entities from 6 items (1 filtered)"
    assert cond(out, "Reconciling") is None and cond(out, "Stalled") is None
    assert "lastHandledReconcileAt" not in out


def test_a_failed_mapping_keeps_its_entity_count_and_says_so() -> None:
    r = result()
    r.fail("HttpError", "GET /users returned 500", stalled=False)
    out = wire(mapping_synced(MappingOutcome(mapping(status={"entityCount": 7}), r), NOW))
    assert "entityCount" not in out and "lastSuccessfulSyncTime" not in out  # the merge patch keeps the old ones
    ready = cond(out, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "HttpError")
    assert ready["message"].endswith("entities from the last successful sync are kept")
    assert cond(out, "Stalled") is None


def test_a_stalled_error_marks_stalled() -> None:
    out = wire(mapping_synced(MappingOutcome(mapping(), None, ConfigError("bad jq", reason="InvalidJq")), NOW))
    assert cond(out, "Ready")["reason"] == "InvalidJq"  # type: ignore[index]
    assert cond(out, "Stalled")["status"] == "True"  # type: ignore[index]
    assert "lastSync" not in out


def test_deletion_blocked_is_ready_without_an_entity_count() -> None:
    r = result(entities_unchanged=1)
    r.deletion_blocked = "Deletion blocked: ..."
    out = wire(mapping_synced(MappingOutcome(mapping(), r), NOW))
    assert cond(out, "Ready")["reason"] == "DeletionBlocked"  # type: ignore[index]
    assert "entityCount" not in out


def test_source_summary_counts_ready_endpoints_and_names_the_first_failure() -> None:
    ok = MappingOutcome(mapping("a"), result(entities_upserted=2))
    bad = MappingOutcome(mapping("b"), None, SecretError("Secret x not found"))
    out = wire(source_synced(source(requested="r1"), [ok, bad], NOW))
    assert (out["endpointsReady"], out["endpointsTotal"], out["endpoints"]) == (1, 2, "1/2")
    assert out["lastHandledReconcileAt"] == "r1" and out["observedGeneration"] == 2
    ready = cond(out, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "EndpointsFailed")
    assert ready["message"] == "1/2 endpoints ready; b: Secret x not found"
    assert [m["name"] for m in out["mappings"]] == ["a", "b"]
    assert out["mappings"][1]["ready"] == "False" and out["mappings"][1]["reason"] == "SecretNotFound"
    assert out["summary"] == "EndpointsFailed: b"


def test_the_status_column_stays_short_whatever_fails() -> None:
    long_error = "x" * 500
    outcomes = [MappingOutcome(mapping(f"mapping-{i}"), None, ConfigError(long_error)) for i in range(40)]
    out = wire(source_synced(source(), outcomes, NOW))
    assert long_error in cond(out, "Ready")["message"], "the full text stays in the condition"  # type: ignore[index]
    assert out["summary"] == "EndpointsFailed: mapping-0, mapping-1, mapping-2, +37 more"
    long_names = [MappingOutcome(mapping("n" * 63 + str(i)), None, ConfigError("bad")) for i in range(3)]
    summary = wire(source_synced(source(), long_names, NOW))["summary"]
    assert len(summary) <= SOURCE_SUMMARY_MAX and summary.startswith("EndpointsFailed: " + "n" * 63)
    assert summary.endswith("+2 more") or summary.endswith("+1 more")
    ok = wire(source_synced(source(), [MappingOutcome(mapping(), result(entities_upserted=1))], NOW))
    assert ok["summary"] == "Succeeded"
    err = SecretError("Secret api-creds not found")
    failed = wire(source_synced(source(), [MappingOutcome(mapping(), None, err)], NOW, source_error=err))
    assert failed["summary"] == "SecretNotFound", "a failure of the source itself names no mapping"
    assert wire(source_synced(source(), [], NOW))["summary"] == "NoMappings"


def test_source_all_ready_and_source_error() -> None:
    out = wire(source_synced(source(), [MappingOutcome(mapping(), result(entities_upserted=2, entities_unchanged=1))],
                             NOW))  # fmt: skip
    assert cond(out, "Ready")["message"] == "1/1 endpoints synced, 3 entities"  # type: ignore[index]
    err = SecretError("Secret api-creds not found")
    out = wire(source_synced(source(), [MappingOutcome(mapping(), None, err)], NOW, source_error=err))
    assert cond(out, "Ready")["reason"] == "SecretNotFound" and cond(out, "Stalled")  # type: ignore[index]


def test_last_transition_time_moves_only_when_the_status_changes() -> None:
    before = {"conditions": [ready_condition("Succeeded")], "observedGeneration": 2}
    out = wire(source_synced(source(status=before), [MappingOutcome(mapping(), result())], NOW))
    assert cond(out, "Ready")["lastTransitionTime"] == EARLIER  # type: ignore[index]
    r = result()
    r.fail("HttpError", "down")
    out = wire(source_synced(source(status=before), [MappingOutcome(mapping(), r)], NOW))
    assert cond(out, "Ready")["lastTransitionTime"] != EARLIER  # type: ignore[index]


def test_first_contact_and_progressing_write_only_what_is_missing() -> None:
    first = source_first_contact(source())
    assert first is not None
    out = wire(first)
    assert set(out) == {"conditions", "summary"} and out["summary"] == "Progressing"
    assert cond(out, "Ready")["status"] == "Unknown" and cond(out, "Reconciling")["status"] == "True"  # type: ignore[index]
    handled = {"observedGeneration": 2, "conditions": [ready_condition("Succeeded")]}
    assert source_progressing(source(status=handled), 1) is None, "nothing new: no Reconciling"
    progressing = source_progressing(source(generation=3, status=handled), 1)
    assert progressing is not None and cond(wire(progressing), "Reconciling") is not None
    assert cond(wire(progressing), "Ready")["reason"] == "Succeeded", "Ready is kept as it was"  # type: ignore[index]
    stale = source_progressing(source(), 1)  # read before its first-contact patch landed
    assert stale is not None and cond(wire(stale), "Ready")["status"] == "Unknown", "Ready is never left out"  # type: ignore[index]


def test_mapping_first_contact_and_source_not_found() -> None:
    out = mapping_first_contact(mapping(), source_exists=True)
    assert out is not None and cond(wire(out), "Ready")["status"] == "Unknown"  # type: ignore[index]
    missing = mapping_first_contact(mapping(), source_exists=False)
    assert missing is not None
    assert cond(wire(missing), "Ready")["reason"] == "SourceNotFound"  # type: ignore[index]
    again = mapping(status=wire(missing))
    assert mapping_first_contact(again, source_exists=False) is None, "said once per generation"


def test_suspended_source_clears_next_sync_and_reconciling() -> None:
    status = {"conditions": [ready_condition("Succeeded")], "nextSyncTime": NOW}
    out = source_suspended(source(status=status))
    assert out is not None
    wire_out = wire(out)
    assert wire_out["nextSyncTime"] is None, "sent as null: removed by the merge patch"
    assert cond(wire_out, "Ready")["reason"] == "Suspended" and cond(wire_out, "Ready")["status"] == "True"  # type: ignore[index]
    assert wire_out["summary"] == "Suspended"
    assert source_suspended(source(status=wire_out | {"observedGeneration": 2})) is None


def test_the_due_predicate() -> None:
    assert source().due_at() == 0.0, "never synced"
    handled = {"observedGeneration": 2, "lastSyncTime": NOW}
    assert source(status=handled).due_at() > 0, "synced: due one interval later"
    assert source(status=handled, requested="now").due_at() == 0.0, "a reconcile request"
    assert source(generation=3, status=handled).due_at() == 0.0, "a new generation"
    assert not source(status=handled | {"lastHandledReconcileAt": "now"}, requested="now").pending


def test_every_reason_is_transient_or_needs_a_change() -> None:
    """Ready=False alone (kstatus: InProgress, retried) or with Stalled=True (kstatus: Failed: only a
    change of the spec, a Secret or a referenced object fixes it)."""
    from httpsync.errors import (
        AuthError,
        ConnectionFailedError,
        DataPathError,
        DestinationDeniedError,
        PaginationError,
        ResponseFormatError,
        SinkError,
        TimeoutFailedError,
    )

    needs_a_change = [ConfigError("x"), InvalidJqError("x"), SecretError("x"), DestinationDeniedError("x"),
                      AuthError("x"), DataPathError("x"), PaginationError("x")]  # fmt: skip
    transient = [HttpStatusError("503"), ConnectionFailedError("x"), TimeoutFailedError("x"),
                 ResponseFormatError("not JSON"), SinkError("x")]  # fmt: skip
    for error in needs_a_change + transient:
        out = wire(mapping_synced(MappingOutcome(mapping(), None, error), NOW))
        stalled = cond(out, "Stalled")
        assert (stalled is not None) == (error in needs_a_change), error.reason
        assert cond(out, "Ready")["status"] == "False"  # type: ignore[index]
    missing = mapping_first_contact(mapping(), source_exists=False)
    assert missing is not None and cond(wire(missing), "Stalled") is not None, "SourceNotFound needs a change"


def test_a_source_is_stalled_only_when_every_failing_mapping_is() -> None:
    stalled = MappingOutcome(mapping("a"), None, InvalidJqError("x"))
    transient = MappingOutcome(mapping("b"), None, HttpStatusError("503"))
    ok = MappingOutcome(mapping("c"), result())
    assert cond(wire(source_synced(source(), [stalled, ok], NOW)), "Stalled") is not None
    assert cond(wire(source_synced(source(), [stalled, transient, ok], NOW)), "Stalled") is None


def test_no_mappings_is_not_ready_and_not_stalled() -> None:
    out = wire(source_synced(source(), [], NOW))
    ready = cond(out, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "NoMappings")
    assert "spec.sourceRef.name: api" in ready["message"]
    assert cond(out, "Stalled") is None and out["endpoints"] == "0/0"


def test_a_mapping_of_a_suspended_source_is_never_reconciling() -> None:
    out = mapping_first_contact(mapping(), source_exists=True, source_suspended=True)
    assert out is not None
    wired = wire(out)
    assert cond(wired, "Ready")["reason"] == "Suspended" and cond(wired, "Reconciling") is None  # type: ignore[index]
    assert mapping_first_contact(mapping(status=wired), source_exists=True, source_suspended=True) is None
