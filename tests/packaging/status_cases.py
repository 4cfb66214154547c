"""Status fixtures of HttpSource / HttpEndpointMapping and what Argo CD's health check should make of them
(test_argocd_health.py runs the shipped Lua script with a real Lua 5.1). Besides hand-written shapes, some cases
are built with the operator's own :class:`httpsync.controller.conditions.Conditions`, so a change there that
confuses Argo CD fails here.

Expected values per case: ``argo``, the Argo CD health status (Healthy, Progressing, Degraded, Suspended), and
``message``, the message where it matters. kstatus (Flux) is not judged here: test_kstatus.py runs the real
library on objects the real operator wrote.
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
    message: str | None = None  # expected Argo CD message, where it matters


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
    Case("no-status", obj(), "Progressing", message="Waiting for the operator to report status"),
    Case("empty-status", obj(status={}), "Progressing"),
    Case(
        "first-contact",
        obj(status=st(cond("Ready", "Unknown", "Waiting for the first sync"), cond("Reconciling", "True", "Syncing"))),
        "Progressing",
        message="Syncing",
    ),
    Case(
        "ready",
        obj(status=st(cond("Ready", "True", "3/3 endpoints synced, 42 entities", "Succeeded"))),
        "Healthy",
        message="3/3 endpoints synced, 42 entities",
    ),
    Case(
        "ready-but-new-generation",
        obj(generation=2, status=st(cond("Ready", "True", "ok", "Succeeded"), observed=1)),
        "Progressing",
        message="Waiting for the operator to observe generation 2",
    ),
    Case(
        "ready-without-observed-generation",
        obj(generation=3, status=st(cond("Ready", "True", "ok", "Succeeded"), observed=None)),
        "Progressing",  # Argo: generation not observed
    ),
    Case(
        "stalled",
        obj(
            status=st(cond("Ready", "False", "secret missing", "SecretNotFound"), cond("Stalled", "True", "no secret"))
        ),
        "Degraded",
        message="no secret",
    ),
    Case(
        "stalled-without-ready",
        obj(status=st(cond("Stalled", "True", "bad config"))),
        "Degraded",
    ),
    Case(
        "stalled-false-ready-true",
        obj(status=st(cond("Ready", "True", "ok"), cond("Stalled", "False", ""))),
        "Healthy",
    ),
    Case(
        "not-ready-reconciling",
        obj(status=st(cond("Ready", "False", "HTTP 503"), cond("Reconciling", "True", "retrying"))),
        "Progressing",
        message="retrying",
    ),
    Case(
        "not-ready",
        obj(status=st(cond("Ready", "False", "1/3 endpoints failed", "Failed"))),
        "Degraded",
        message="1/3 endpoints failed",
    ),
    Case(
        "ready-unknown",
        obj(status=st(cond("Ready", "Unknown", "Waiting"))),
        "Progressing",
    ),
    Case("conditions-empty", obj(status=st()), "Progressing"),
    Case(
        "suspended",
        obj(suspend=True, status=st(cond("Ready", "True", "Suspended", "Suspended"))),
        "Suspended",
    ),
    Case(
        "suspended-new-generation",
        obj(suspend=True, generation=4, status=st(cond("Ready", "False", "x"), observed=3)),
        "Suspended",  # suspension first: Argo CD must not wait for a suspended source
    ),
    Case(
        "suspend-false",
        obj(suspend=False, status=st(cond("Ready", "True", "ok"))),
        "Healthy",
    ),
    Case(
        "terminating",
        obj(deleting=True, status=st(cond("Ready", "True", "ok"))),
        "Healthy",  # Argo CD shows deletion itself
    ),
    Case(
        "mapping-ready",
        obj("HttpEndpointMapping", status=st(cond("Ready", "True", "120 entities"))),
        "Healthy",
    ),
    Case(
        "mapping-stalled",
        obj(
            "HttpEndpointMapping",
            generation=2,
            status=st(cond("Ready", "False", "jq error"), cond("Stalled", "True", "invalid jq"), observed=2),
        ),
        "Degraded",
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
    ),
    Case(
        "operator-synced",
        obj(
            status=operator_status(
                [("reconciling", "Progressing", "Syncing"), ("ready", "Succeeded", "2/2 endpoints synced, 7 entities")]
            )
        ),
        "Healthy",
        message="2/2 endpoints synced, 7 entities",
    ),
    Case(
        "operator-resync-after-success",
        obj(status=operator_status([("ready", "Succeeded", "ok"), ("reconciling", "Progressing", "Syncing")])),
        "Healthy",  # Argo CD keeps a working source Healthy while it re-syncs
    ),
    Case(
        "operator-stalled",
        obj(status=operator_status([("not_ready_stalled", "InvalidSpec", "auth secret has no key token")])),
        "Degraded",
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
        message="HTTP 503 from api.example.com",
    ),
]
