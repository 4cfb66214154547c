"""Kubernetes Events on changes of state (first success, failure, recovery), not on every sync.

They are reported by ``httpsync`` (``source.component``, ``reportingComponent``; events.k8s.io's
``reportingController``), so ``kubectl get events --field-selector source=httpsync`` lists them:
:func:`configure_posting` sets kopf's posting settings at start-up.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import kopf

log = logging.getLogger("httpsync.controller")
REPORTING_COMPONENT = "httpsync"


def configure_posting(settings: kopf.OperatorSettings) -> None:
    """Events from ``httpsync``, instance = the Pod's name (its hostname), named ``httpsync-event-*``."""
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = socket.gethostname()[:128]
    settings.posting.event_name_prefix = f"{REPORTING_COMPONENT}-event-"


def _post(body: Any, type_: str, reason: str, message: str) -> None:
    try:
        kopf.event(body, type=type_, reason=reason, message=message[:1024])
    except Exception:  # events are best effort (outside a running operator there is no queue)
        log.debug("could not post event %s on %s", reason, body.get("metadata", {}).get("name"))


def normal(body: Any, reason: str, message: str) -> None:
    _post(body, "Normal", reason, message)


def warning(body: Any, reason: str, message: str) -> None:
    _post(body, "Warning", reason, message)


def on_transition(body: Any, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Post an Event when Ready changes status, or when a failure changes reason."""
    old, new = before.get("status"), after.get("status")
    reason, message = after.get("reason", ""), after.get("message", "")
    if new == "True" and old != "True":
        normal(body, "Recovered" if old == "False" else "Synced", message)
    elif new == "False" and (old != "False" or before.get("reason") != reason):
        warning(body, reason or "SyncFailed", message)
