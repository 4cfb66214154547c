"""Plain data types shared by the engine, the sinks, the CLI and the controller.

Entities are plain dicts (fast to build by the thousand, JSON-ready):
``{"identifier", "blueprint", "title", "team", "icon", "properties": {}, "relations": {}}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypedDict

from httpsync.api.models import EndpointSyncResult


class Entity(TypedDict, total=False):
    identifier: str
    blueprint: str
    title: str | None
    team: Any
    icon: str | None
    properties: dict[str, Any]
    relations: dict[str, Any]


class EntityRef(NamedTuple):
    blueprint: str
    identifier: str


class SecretResolver(Protocol):
    """Gives the value of one key of a Secret in the resource's namespace.

    Raises :class:`httpsync.errors.SecretError` with a message naming the Secret and key
    (never a value) when either is missing.
    """

    async def get(self, name: str, key: str) -> str: ...


MAX_ERROR_SAMPLES = 5


@dataclass(slots=True)
class EndpointResult:
    """What one sync of one endpoint did. Feeds the CLI output and the resource status."""

    mapping: str
    kind: str
    outcome: str = "Succeeded"  # or "Failed"
    reason: str | None = None
    message: str = ""
    stalled: bool = False
    requests: int = 0
    pages: int = 0
    items_fetched: int = 0
    items_filtered: int = 0
    entities: int = 0
    entities_upserted: int = 0
    entities_unchanged: int = 0
    entities_deleted: int = 0
    entities_failed: int = 0
    mapping_error_count: int = 0
    mapping_error_samples: list[str] = field(default_factory=list)
    sink_error_samples: list[str] = field(default_factory=list)
    deletion_blocked: str | None = None
    started: float = field(default_factory=time.monotonic)
    duration_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.outcome == "Succeeded"

    def add_mapping_error(self, message: str) -> None:
        self.mapping_error_count += 1
        if len(self.mapping_error_samples) < MAX_ERROR_SAMPLES:
            self.mapping_error_samples.append(message)

    def fail(self, reason: str, message: str, *, stalled: bool = False) -> None:
        self.outcome = "Failed"
        self.reason = reason
        self.message = message
        self.stalled = stalled

    def finish(self) -> EndpointResult:
        self.duration_seconds = round(time.monotonic() - self.started, 3)
        return self

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``-o json`` object for this endpoint."""
        return {
            "mapping": self.mapping,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "requests": self.requests,
            "pages": self.pages,
            "itemsFetched": self.items_fetched,
            "itemsFiltered": self.items_filtered,
            "entities": self.entities,
            "entitiesUpserted": self.entities_upserted,
            "entitiesUnchanged": self.entities_unchanged,
            "entitiesDeleted": self.entities_deleted,
            "entitiesFailed": self.entities_failed,
            "mappingErrors": self.mapping_error_count,
            "mappingErrorSamples": list(self.mapping_error_samples),
            "deletionBlocked": self.deletion_blocked,
            "durationSeconds": self.duration_seconds,
        }

    def to_status(self) -> EndpointSyncResult:
        """The same facts as the resource status' ``lastSync`` block."""
        return EndpointSyncResult(
            outcome=self.outcome,  # type: ignore[arg-type]
            reason=self.reason,
            message=self.message or None,
            requests=self.requests,
            pages=self.pages,
            items_fetched=self.items_fetched,
            items_filtered=self.items_filtered,
            entities=self.entities,
            entities_upserted=self.entities_upserted,
            entities_unchanged=self.entities_unchanged,
            entities_deleted=self.entities_deleted,
            entities_failed=self.entities_failed,
            mapping_errors={"count": self.mapping_error_count, "samples": self.mapping_error_samples},
            duration_seconds=self.duration_seconds,
        )
