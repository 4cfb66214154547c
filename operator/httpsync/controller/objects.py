"""The custom resources as the service sees them: parsed into their pydantic models once, at the
handler boundary. Raw ``kopf.Body`` dicts stop here.

A spec the models reject (the API server's CEL rules let a few things through that the Python
checks refuse) is kept as ``spec=None`` with ``spec_error`` saying why, so the object can still be
scheduled, suspended and reported on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from httpsync.api.models import (
    API_VERSION,
    HttpEndpointMappingSpec,
    HttpEndpointMappingStatus,
    HttpSourceSpec,
    HttpSourceStatus,
)
from httpsync.controller.config import min_interval

log = logging.getLogger("httpsync.controller")
S = TypeVar("S", HttpSourceStatus, HttpEndpointMappingStatus)

SOURCES = "httpsources"
MAPPINGS = "httpendpointmappings"
REQUESTED_AT = "httpsync.io/requested-at"
FINALIZER = "httpsync.io/finalizer"


def first_error(e: ValidationError) -> str:
    """``loc: message`` of a validation error's first problem."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _status_model(cls: type[S], raw: Any, where: str) -> S:
    try:
        return cls.model_validate(raw or {})
    except ValidationError as e:  # hand-edited status: start afresh rather than stop
        log.warning("%s: ignoring an unreadable status (%s)", where, first_error(e))
        return cls()


@dataclass(frozen=True, slots=True)
class Meta:
    namespace: str
    name: str
    uid: str
    generation: int
    requested_at: str | None
    finalized: bool = False  # carries our finalizer (kopf adds it with a resourceVersion-tested patch)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Meta:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            requested_at=(meta.get("annotations") or {}).get(REQUESTED_AT),
            finalized=FINALIZER in (meta.get("finalizers") or ()),
        )


def handled(meta: Meta, observed_generation: int | None, last_handled: str | None) -> bool:
    """The one predicate: has a sync of this generation and of this reconcile request finished?"""
    return observed_generation == meta.generation and (meta.requested_at is None or last_handled == meta.requested_at)


@dataclass(frozen=True, slots=True)
class SourceObject:
    meta: Meta
    spec: HttpSourceSpec | None
    spec_error: str | None
    suspended: bool
    status: HttpSourceStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SourceObject:
        meta = Meta.of(body)
        raw_spec = dict(body.get("spec") or {})
        spec: HttpSourceSpec | None = None
        error: str | None = None
        try:
            spec = HttpSourceSpec.validate_any_interval(raw_spec)
        except ValidationError as e:
            error = f"spec is invalid: {first_error(e)}"
        status = _status_model(HttpSourceStatus, body.get("status"), f"HttpSource {meta.namespace}/{meta.name}")
        return cls(meta, spec, error, bool(raw_spec.get("suspend")), status)

    @property
    def key(self) -> tuple[str, str]:
        return (self.meta.namespace, self.meta.name)

    @property
    def pending(self) -> bool:
        """A generation or reconcile request that no finished sync has handled yet."""
        return not handled(self.meta, self.status.observed_generation, self.status.last_handled_reconcile_at)

    @property
    def interval_seconds(self) -> float:
        if self.spec is None:
            return 3600.0
        return min_interval(self.spec.interval_seconds, f"HttpSource {self.meta.namespace}/{self.meta.name}")

    def due_at(self) -> float:
        """When the next sync is due (epoch seconds; 0 = now): restart-safe, from the status."""
        if self.pending:
            return 0.0
        last = parse_iso(self.status.last_sync_time)
        if last is None or self.spec is None:
            return 0.0
        return last + self.interval_seconds

    @property
    def body(self) -> dict[str, Any]:
        return _event_body("HttpSource", self.meta)


@dataclass(frozen=True, slots=True)
class MappingObject:
    meta: Meta
    source_name: str
    deletion_policy: str
    spec: HttpEndpointMappingSpec | None
    spec_error: str | None
    status: HttpEndpointMappingStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> MappingObject:
        meta = Meta.of(body)
        raw_spec = dict(body.get("spec") or {})
        spec: HttpEndpointMappingSpec | None = None
        error: str | None = None
        try:
            spec = HttpEndpointMappingSpec.model_validate(raw_spec)
        except ValidationError as e:
            error = f"spec is invalid: {first_error(e)}"
        status = _status_model(
            HttpEndpointMappingStatus, body.get("status"), f"HttpEndpointMapping {meta.namespace}/{meta.name}"
        )
        return cls(
            meta=meta,
            source_name=str((raw_spec.get("sourceRef") or {}).get("name", "")),
            deletion_policy=str(raw_spec.get("deletionPolicy") or "Delete"),
            spec=spec,
            spec_error=error,
            status=status,
        )

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def owner(self) -> str:
        """The key the sinks and the state know this mapping by."""
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def pending(self) -> bool:
        return not handled(self.meta, self.status.observed_generation, self.status.last_handled_reconcile_at)

    @property
    def body(self) -> dict[str, Any]:
        return _event_body("HttpEndpointMapping", self.meta)


def _event_body(kind: str, meta: Meta) -> dict[str, Any]:
    """Just enough of an object to post Events about it."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
    }
