"""kstatus-compatible conditions (the rules Flux, Argo CD and `kubectl wait` read).

- ``Ready`` is always present; ``Reconciling`` and ``Stalled`` are present only while True,
  and marking one removes the other (as fluxcd/pkg/runtime/conditions does).
- ``lastTransitionTime`` changes only when a condition's status changes.
- Reasons are CamelCase words; messages are sentences a user can act on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

_REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
MESSAGE_MAX = 1024


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _clean_reason(reason: str) -> str:
    if _REASON_RE.match(reason):
        return reason
    cleaned = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", reason) if w)
    return cleaned if _REASON_RE.match(cleaned) else "Unknown"


class Conditions:
    """A mutable view over a ``status.conditions`` list; ``to_list()`` gives the full list to patch
    (JSON merge patches replace lists whole)."""

    def __init__(self, existing: list[dict[str, Any]] | None, generation: int | None) -> None:
        self._by_type: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in existing or [] if "type" in c}
        self.generation = generation

    def get(self, type_: str) -> dict[str, Any] | None:
        return self._by_type.get(type_)

    def status(self, type_: str) -> str | None:
        c = self._by_type.get(type_)
        return c["status"] if c else None

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        old = self._by_type.get(type_)
        changed = old is None or old.get("status") != status
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "reason": _clean_reason(reason),
            "message": message[:MESSAGE_MAX],
            "lastTransitionTime": now_iso() if changed or old is None else old.get("lastTransitionTime", now_iso()),
        }
        if self.generation is not None:
            cond["observedGeneration"] = self.generation
        self._by_type[type_] = cond

    def delete(self, type_: str) -> None:
        self._by_type.pop(type_, None)

    # Flux-style helpers -------------------------------------------------------

    def mark_reconciling(self, reason: str, message: str) -> None:
        self.set(RECONCILING, "True", reason, message)
        self.delete(STALLED)

    def mark_stalled(self, reason: str, message: str) -> None:
        self.set(STALLED, "True", reason, message)
        self.delete(RECONCILING)

    def mark_ready(self, reason: str, message: str) -> None:
        self.set(READY, "True", reason, message)
        self.delete(RECONCILING)
        self.delete(STALLED)

    def mark_not_ready(self, reason: str, message: str, *, stalled: bool) -> None:
        self.set(READY, "False", reason, message)
        self.delete(RECONCILING)
        if stalled:
            self.mark_stalled(reason, message)
        else:
            self.delete(STALLED)

    def mark_unknown(self, reason: str, message: str) -> None:
        self.set(READY, "Unknown", reason, message)

    def to_list(self) -> list[dict[str, Any]]:
        order = {READY: 0, RECONCILING: 1, STALLED: 2}
        return sorted(self._by_type.values(), key=lambda c: (order.get(c["type"], 9), c["type"]))
