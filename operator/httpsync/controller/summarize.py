"""Pure functions from what happened to the status models to write: no I/O, no clock but the ``now``
they are given, unit-tested on their own (tests/controller/test_summarize.py).

Each function returns the status fields to merge-patch (only the fields it sets are written;
a field set to None is removed), or None when nothing needs writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from httpsync.api.models import (
    SOURCE_SUMMARY_MAX,
    Condition,
    EndpointResult,
    HttpEndpointMappingStatus,
    HttpSourceStatus,
    MappingSummary,
)
from httpsync.controller.conditions import READY, RECONCILING, Conditions
from httpsync.controller.objects import MappingObject, SourceObject
from httpsync.errors import EngineError

MAX_SUMMARIES = 100
SUMMARY_MESSAGE_MAX = 1024
SUMMARY_NAMES = 3  # failing mappings named in the STATUS column


@dataclass(frozen=True, slots=True)
class MappingOutcome:
    """One mapping's part of a source sync: its engine result, or the error that kept it from running."""

    mapping: MappingObject
    result: EndpointResult | None
    error: EngineError | None = None

    @property
    def succeeded(self) -> bool:
        return self.result is not None and self.result.succeeded

    @property
    def stalled(self) -> bool:
        if self.result is not None:
            return not self.result.succeeded and self.result.stalled
        return self.error.stalled if self.error is not None else False

    @property
    def reason(self) -> str:
        if self.result is not None:
            return self.result.reason or "Succeeded"
        return self.error.reason if self.error is not None else "SyncFailed"

    @property
    def message(self) -> str:
        if self.result is not None:
            return self.result.message or ""
        return self.error.message if self.error is not None else "sync did not run"


def conditions_of(status: HttpSourceStatus | HttpEndpointMappingStatus, generation: int) -> Conditions:
    return Conditions([c.to_wire() for c in status.conditions], generation)


def _models(cond: Conditions) -> list[Condition]:
    return [Condition.model_validate(c) for c in cond.to_list()]


def ready_of(status: HttpSourceStatus | HttpEndpointMappingStatus) -> dict[str, Any]:
    """The Ready condition as a dict (empty when absent), for Events on transitions."""
    for c in status.conditions:
        if c.type == READY:
            return c.to_wire()
    return {}


def summary_of(cond: Conditions, failing: Sequence[str] = ()) -> str:
    """The source's STATUS column: the Ready reason, and which mappings fail (a few names, then a
    count), never the whole message: that is the condition's, shown by ``-o wide`` and describe."""
    reason = (cond.get(READY) or {}).get("reason") or "Unknown"
    if not failing:
        return reason
    shown = list(failing[:SUMMARY_NAMES])
    while shown:
        text = f"{reason}: {', '.join(shown)}"
        if len(failing) > len(shown):
            text += f", +{len(failing) - len(shown)} more"
        if len(text) <= SOURCE_SUMMARY_MAX:
            return text
        shown.pop()
    return f"{reason}: {len(failing)} mappings"[:SOURCE_SUMMARY_MAX]


def _source_status(cond: Conditions, failing: Sequence[str] = (), **fields: Any) -> HttpSourceStatus:
    return HttpSourceStatus(conditions=_models(cond), summary=summary_of(cond, failing), **fields)


# --------------------------------------------------------------------------- before a sync


def source_first_contact(source: SourceObject) -> HttpSourceStatus | None:
    """Ready=Unknown + Reconciling=True, so nothing looks finished before its first sync.
    observedGeneration is written only when a sync of that generation has finished: a restart
    mid-sync must see the generation as not yet handled."""
    cond = conditions_of(source.status, source.meta.generation)
    if cond.status(READY) is not None and cond.status(RECONCILING) is not None:
        return None
    cond.mark_reconciling("Progressing", "Syncing endpoints")
    if cond.status(READY) in (None, "Unknown"):
        cond.mark_unknown("Progressing", "Waiting for the first sync")
    return _source_status(cond)


def source_progressing(source: SourceObject, mapping_count: int) -> HttpSourceStatus | None:
    """Reconciling=True when a sync starts for a generation or request not handled yet. The source
    may have been read before its first-contact patch: Ready is (re)stated, never left out, since the
    patch replaces the whole conditions list."""
    cond = conditions_of(source.status, source.meta.generation)
    if cond.status(RECONCILING) is not None or not source.pending:
        return None
    cond.mark_reconciling("Progressing", f"Syncing {mapping_count} endpoint(s)")
    if cond.status(READY) is None:
        cond.mark_unknown("Progressing", "Waiting for the first sync")
    return _source_status(cond)


def source_waiting(source: SourceObject, message: str) -> HttpSourceStatus:
    """Reconciling=True, reason RateLimited: the sync under way waits for the API's rate limit (a
    ``Retry-After`` worth telling a person about), and until when."""
    cond = conditions_of(source.status, source.meta.generation)
    cond.mark_reconciling("RateLimited", message)
    if cond.status(READY) is None:
        cond.mark_unknown("Progressing", "Waiting for the first sync")
    return _source_status(cond)


def mapping_first_contact(
    mapping: MappingObject, *, source_exists: bool, source_suspended: bool = False
) -> HttpEndpointMappingStatus | None:
    """A new mapping gets Ready=Unknown/Reconciling=True; one whose source does not exist gets
    Ready=False SourceNotFound; one whose source is suspended says so (never Reconciling)."""
    if source_exists and source_suspended:
        return mapping_suspended(mapping, mapping.source_name)
    cond = conditions_of(mapping.status, mapping.meta.generation)
    if not source_exists:
        current = cond.get(READY) or {}
        if current.get("reason") == "SourceNotFound" and mapping.status.observed_generation == mapping.meta.generation:
            return None
        cond.mark_not_ready(
            "SourceNotFound",
            f"HttpSource {mapping.source_name} not found in namespace {mapping.namespace}; create it, or fix "
            "spec.sourceRef.name (this mapping starts syncing as soon as the source exists)",
            stalled=True,  # nothing but a change (the source appearing, or a new sourceRef) fixes it
        )
        return HttpEndpointMappingStatus(conditions=_models(cond), observed_generation=mapping.meta.generation)
    if cond.status(READY) is None or (mapping.pending and cond.status(RECONCILING) is None):
        cond.mark_reconciling("Progressing", "Sync requested")
        if cond.status(READY) is None:
            cond.mark_unknown("Progressing", "Waiting for the first sync")
        return HttpEndpointMappingStatus(conditions=_models(cond))
    return None


SUSPENDED_MESSAGE = "Syncing is suspended (spec.suspend is true); entities from the last sync are kept"


def source_suspended(source: SourceObject) -> HttpSourceStatus | None:
    cond = conditions_of(source.status, source.meta.generation)
    ready = cond.get(READY) or {}
    if ready.get("reason") == "Suspended" and source.status.observed_generation == source.meta.generation:
        return None
    cond.set(READY, ready.get("status", "Unknown"), "Suspended", SUSPENDED_MESSAGE)
    cond.delete(RECONCILING)
    return _source_status(cond, observed_generation=source.meta.generation, next_sync_time=None)


def mapping_suspended(mapping: MappingObject, source_name: str) -> HttpEndpointMappingStatus | None:
    """Ready keeps its status with reason Suspended; no Reconciling. None when it already says so."""
    cond = conditions_of(mapping.status, mapping.meta.generation)
    ready = cond.get(READY) or {}
    if ready.get("reason") == "Suspended" and cond.status(RECONCILING) is None:
        return None
    cond.set(READY, ready.get("status", "Unknown"), "Suspended", f"HttpSource {source_name} is suspended")
    cond.delete(RECONCILING)
    return HttpEndpointMappingStatus(conditions=_models(cond))


# --------------------------------------------------------------------------- after a sync


def _success_message(result: EndpointResult) -> str:
    msg = f"Synced {result.entities_upserted + result.entities_unchanged} entities from {result.items_fetched} items"
    extras = []
    if result.items_filtered:
        extras.append(f"{result.items_filtered} filtered")
    if result.entities_deleted:
        extras.append(f"{result.entities_deleted} deleted")
    if result.mapping_error_count:
        extras.append(f"{result.mapping_error_count} mapping errors")
    if result.entities_failed:
        extras.append(f"{result.entities_failed} rejected by the sink")
    if result.entities_conflicting:
        extras.append(
            f"{result.entities_conflicting} also produced by another mapping, kept while either produces them "
            "(lastSync.mappingErrors names it)"
        )
    return msg + (" (" + ", ".join(extras) + ")" if extras else "")


def mapping_synced(outcome: MappingOutcome, now: str) -> HttpEndpointMappingStatus:
    """The whole status of a mapping after a sync of its source."""
    mapping, result = outcome.mapping, outcome.result
    cond = conditions_of(mapping.status, mapping.meta.generation)
    fields: dict[str, Any] = {"observed_generation": mapping.meta.generation, "last_sync_time": now}
    if mapping.meta.requested_at is not None:
        fields["last_handled_reconcile_at"] = mapping.meta.requested_at
    if result is None:
        err = outcome.error or EngineError("sync did not run")
        cond.mark_not_ready(err.reason, err.message, stalled=err.stalled)
    else:
        fields["last_sync"] = result.to_status()
        if result.succeeded:
            fields["last_successful_sync_time"] = now
            if result.deletion_blocked:  # stale entities are still owned: the count is unknown here
                cond.mark_ready("DeletionBlocked", result.deletion_blocked)
            else:
                fields["entity_count"] = result.entities_owned
                cond.mark_ready("Succeeded", _success_message(result))
        else:
            cond.mark_not_ready(
                result.reason or "SyncFailed",
                f"{result.message}; entities from the last successful sync are kept",
                stalled=result.stalled,
            )
    return HttpEndpointMappingStatus(conditions=_models(cond), **fields)


def source_synced(
    source: SourceObject,
    outcomes: Sequence[MappingOutcome],
    now: str,
    *,
    source_error: EngineError | None = None,
    next_sync_time: str | None = None,
) -> HttpSourceStatus:
    """The whole status of a source after a sync of its mappings (and the next sync's time, if given)."""
    cond = conditions_of(source.status, source.meta.generation)
    total = len(outcomes)
    ready = sum(1 for o in outcomes if o.succeeded)
    summaries = [
        MappingSummary(
            name=o.mapping.name,
            ready="True" if o.succeeded else "False",
            reason=o.reason,
            message=o.message[:SUMMARY_MESSAGE_MAX],
        )
        for o in outcomes[:MAX_SUMMARIES]
    ]
    if source_error is not None:
        cond.mark_not_ready(source_error.reason, source_error.message, stalled=source_error.stalled)
    elif total == 0:
        # Not Ready (and not Stalled: creating a mapping fixes it): a GitOps tool applying a source with
        # its mappings must not read "healthy" before the mappings have synced.
        cond.mark_not_ready(
            "NoMappings",
            "No HttpEndpointMapping refers to this source yet: create one with "
            f"spec.sourceRef.name: {source.meta.name}",
            stalled=False,
        )
    elif ready == total:
        entities = sum(
            o.result.entities_upserted + o.result.entities_unchanged for o in outcomes if o.result is not None
        )
        cond.mark_ready("Succeeded", f"{total}/{total} endpoints synced, {entities} entities")
    else:
        failed = [o for o in outcomes if not o.succeeded]
        first = failed[0]
        cond.mark_not_ready(
            "EndpointsFailed",
            f"{ready}/{total} endpoints ready; {first.mapping.name}: {first.message}",
            stalled=all(o.stalled for o in failed),  # only changes can make this source Ready
        )
    fields: dict[str, Any] = {}
    if source.meta.requested_at is not None:
        fields["last_handled_reconcile_at"] = source.meta.requested_at
    if next_sync_time is not None:
        fields["next_sync_time"] = next_sync_time
    failing = [o.mapping.name for o in outcomes if not o.succeeded] if source_error is None else []
    return _source_status(
        cond,
        failing,
        observed_generation=source.meta.generation,
        last_sync_time=now,
        endpoints_ready=ready,
        endpoints_total=total,
        endpoints=f"{ready}/{total}",
        mappings=summaries,
        **fields,
    )
