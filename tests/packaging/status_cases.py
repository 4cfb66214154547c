"""Status fixtures of HttpSource / HttpEndpointMapping and what GitOps tools should make of them.

Shared by test_argocd_health.py (the Argo CD Lua health check, run by a real Lua 5.1) and
test_kstatus.py (kstatus rules). Besides hand-written shapes, some cases are built with the operator's own
:class:`httpsync.controller.conditions.Conditions`, so a change there that confuses GitOps tools fails here.

Expected values per case:
- ``argo``: Argo CD health status (Healthy, Progressing, Degraded, Suspended).
- ``kstatus``: the rules of operator-conventions.md (kstatus + Ready, as Flux reads it).
- ``upstream``: sigs.k8s.io/cli-utils kstatus ``status.Compute`` for a custom resource, which ignores Ready
  (see test_kstatus.py); given only where it differs from ``kstatus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from httpsync.controller.conditions import Conditions


@dataclass(frozen=True)
class Case:
    id: str
    obj: dict[str, Any]
    argo: str
    kstatus: str
    upstream: str | None = None
    message: str | None = None  # expected Argo CD message, where it matters

    @property
    def upstream_kstatus(self) -> str:
        return self.upstream or self.kstatus


def cond(type_: str, status: str, message: str = "", reason: str = "Progressing") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def obj(
    kind: str = "HttpSource",
    *,
    generation: int = 1,
    status: dict[str, Any] | None = None,
    suspend: bool | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"baseUrl": "https://api.example.com"}
        if kind == "HttpSource"
        else {
            "sourceRef": {"name": "src"},
            "kind": "/users",
            "mappings": {"identifier": ".id", "blueprint": '"user"'},
        }
    )
    if suspend is not None:
        spec["suspend"] = suspend
    metadata: dict[str, Any] = {"name": "x", "namespace": "ns", "generation": generation}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        metadata["finalizers"] = ["httpsync.io/finalizer"]
    out: dict[str, Any] = {"apiVersion": "httpsync.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    if status is not None:
        out["status"] = status
    return out


def st(*conditions: dict[str, Any], observed: int | None = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        out["observedGeneration"] = observed
    return out


def operator_status(steps: list[tuple[str, ...]], generation: int = 1) -> dict[str, Any]:
    """A status as the operator writes it: Conditions calls in order, plus observedGeneration."""
    c = Conditions(None, generation)
    for name, *args in steps:
        if name == "not_ready_stalled":
            c.mark_not_ready(*args, stalled=True)
        elif name == "not_ready":
            c.mark_not_ready(*args, stalled=False)
        else:
            getattr(c, f"mark_{name}")(*args)
    return {"conditions": c.to_list(), "observedGeneration": generation}


CASES: list[Case] = [
    # --- hand-written shapes
    Case("no-status", obj(), "Progressing", "Current", message="Waiting for the operator to report status"),
    Case("empty-status", obj(status={}), "Progressing", "Current"),
    Case(
        "first-contact",
        obj(status=st(cond("Ready", "Unknown", "Waiting for the first sync"), cond("Reconciling", "True", "Syncing"))),
        "Progressing",
        "InProgress",
        message="Syncing",
    ),
    Case(
        "ready",
        obj(status=st(cond("Ready", "True", "3/3 endpoints synced, 42 entities", "Succeeded"))),
        "Healthy",
        "Current",
        message="3/3 endpoints synced, 42 entities",
    ),
    Case(
        "ready-but-new-generation",
        obj(generation=2, status=st(cond("Ready", "True", "ok", "Succeeded"), observed=1)),
        "Progressing",
        "InProgress",
        message="Waiting for the operator to observe generation 2",
    ),
    Case(
        "ready-without-observed-generation",
        obj(generation=3, status=st(cond("Ready", "True", "ok", "Succeeded"), observed=None)),
        "Progressing",  # Argo: generation not observed
        "Current",  # kstatus checks the generation only when status.observedGeneration exists
    ),
    Case(
        "stalled",
        obj(
            status=st(cond("Ready", "False", "secret missing", "SecretNotFound"), cond("Stalled", "True", "no secret"))
        ),
        "Degraded",
        "Failed",
        message="no secret",
    ),
    Case(
        "stalled-without-ready",
        obj(status=st(cond("Stalled", "True", "bad config"))),
        "Degraded",
        "Failed",
    ),
    Case(
        "stalled-false-ready-true",
        obj(status=st(cond("Ready", "True", "ok"), cond("Stalled", "False", ""))),
        "Healthy",
        "Current",
    ),
    Case(
        "not-ready-reconciling",
        obj(status=st(cond("Ready", "False", "HTTP 503"), cond("Reconciling", "True", "retrying"))),
        "Progressing",
        "InProgress",
        message="retrying",
    ),
    Case(
        "not-ready",
        obj(status=st(cond("Ready", "False", "1/3 endpoints failed", "Failed"))),
        "Degraded",
        "InProgress",
        upstream="Current",
        message="1/3 endpoints failed",
    ),
    Case(
        "ready-unknown",
        obj(status=st(cond("Ready", "Unknown", "Waiting"))),
        "Progressing",
        "InProgress",
        upstream="Current",
    ),
    Case("conditions-empty", obj(status=st()), "Progressing", "Current"),
    Case(
        "suspended",
        obj(suspend=True, status=st(cond("Ready", "True", "Suspended", "Suspended"))),
        "Suspended",
        "Current",
    ),
    Case(
        "suspended-new-generation",
        obj(suspend=True, generation=4, status=st(cond("Ready", "False", "x"), observed=3)),
        "Suspended",  # suspension first: Argo CD must not wait for a suspended source
        "InProgress",
    ),
    Case(
        "suspend-false",
        obj(suspend=False, status=st(cond("Ready", "True", "ok"))),
        "Healthy",
        "Current",
    ),
    Case(
        "terminating",
        obj(deleting=True, status=st(cond("Ready", "True", "ok"))),
        "Healthy",  # Argo CD shows deletion itself
        "Terminating",
    ),
    Case(
        "mapping-ready",
        obj("HttpEndpointMapping", status=st(cond("Ready", "True", "120 entities"))),
        "Healthy",
        "Current",
    ),
    Case(
        "mapping-stalled",
        obj(
            "HttpEndpointMapping",
            generation=2,
            status=st(cond("Ready", "False", "jq error"), cond("Stalled", "True", "invalid jq"), observed=2),
        ),
        "Degraded",
        "Failed",
    ),
    # --- statuses written by the operator's Conditions class
    Case(
        "operator-first-contact",
        obj(
            status=operator_status(
                [
                    ("reconciling", "Progressing", "Syncing endpoints"),
                    ("unknown", "Progressing", "Waiting for the first sync"),
                ]
            )
        ),
        "Progressing",
        "InProgress",
    ),
    Case(
        "operator-synced",
        obj(
            status=operator_status(
                [("reconciling", "Progressing", "Syncing"), ("ready", "Succeeded", "2/2 endpoints synced, 7 entities")]
            )
        ),
        "Healthy",
        "Current",
        message="2/2 endpoints synced, 7 entities",
    ),
    Case(
        "operator-resync-after-success",
        obj(status=operator_status([("ready", "Succeeded", "ok"), ("reconciling", "Progressing", "Syncing")])),
        "Healthy",  # Argo CD keeps a working source Healthy while it re-syncs
        "InProgress",
    ),
    Case(
        "operator-stalled",
        obj(status=operator_status([("not_ready_stalled", "InvalidSpec", "auth secret has no key token")])),
        "Degraded",
        "Failed",
    ),
    Case(
        "operator-transient-failure",
        obj(
            status=operator_status(
                [
                    ("reconciling", "Progressing", "Syncing"),
                    ("not_ready", "FetchFailed", "HTTP 503 from api.example.com"),
                ]
            )
        ),
        "Degraded",
        "InProgress",
        upstream="Current",
        message="HTTP 503 from api.example.com",
    ),
]
