"""Prometheus metrics, served on their own port. Labels never carry item identifiers.

The chart's alerts and Grafana dashboard (charts/httpsync-operator/files/) use these names only:
tests/helm/test_monitoring.py parses every expression there and checks that each metric it names is defined here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800)
# Waiting for a sync slot and lateness against the schedule: from well under a second to many minutes.
_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
UNSHARDED = "(none)"  # the shard label of the operator without --shard (not a valid label value: no clash)


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.sync_duration = Histogram(
            "httpsync_sync_duration_seconds",
            "Duration of one endpoint sync.",
            ["namespace", "source", "mapping"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.syncs = Counter(
            "httpsync_syncs_total",
            "Endpoint syncs by outcome.",
            ["namespace", "source", "mapping", "outcome"],
            registry=registry,
        )
        self.http_requests = Counter(
            "httpsync_http_requests_total",
            "HTTP requests to source APIs by status code (0: no response).",
            ["namespace", "source", "code"],
            registry=registry,
        )
        self.entities_upserted = Counter(
            "httpsync_entities_upserted_total",
            "Entities pushed to the sink.",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.entities_deleted = Counter(
            "httpsync_entities_deleted_total",
            "Entities deleted from the sink.",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.items_fetched = Counter(
            "httpsync_items_fetched_total",
            "Items read from source APIs.",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.last_success = Gauge(
            "httpsync_last_success_timestamp_seconds",
            "Unix time of the last fully successful sync of a mapping.",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.entity_count = Gauge(
            "httpsync_entities",
            "Entities a mapping owns after its last sync.",
            ["namespace", "mapping"],
            registry=registry,
        )

        self.entities_conflicting = Gauge(
            "httpsync_entities_conflicting",
            "Entities of the mapping's last sync that another mapping produces too (same blueprint and identifier).",
            ["namespace", "mapping"],
            registry=registry,
        )

        # ---- the operator at scale (issue 14 §5): global fairness, schedule, shards
        self.syncs_in_flight = Gauge(
            "httpsync_syncs_in_flight",
            "Source syncs running now, across the operator.",
            registry=registry,
        )
        self.sync_slots = Gauge(
            "httpsync_sync_slots",
            "Source syncs that may run at once (saturation: httpsync_syncs_in_flight / httpsync_sync_slots).",
            registry=registry,
        )
        self.queue_wait = Histogram(
            "httpsync_sync_queue_wait_seconds",
            "Time a due source sync waited for a free sync slot.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.schedule_drift = Histogram(
            "httpsync_schedule_drift_seconds",
            "Lateness of a scheduled source sync: its start minus its due time (nextSyncTime).",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.schedule_drift_last = Gauge(
            "httpsync_schedule_drift_last_seconds",
            "Lateness of the last scheduled sync of a source.",
            ["namespace", "source"],
            registry=registry,
        )
        self.shard_objects = Gauge(
            "httpsync_shard_objects",
            f"Objects this operator serves, by shard (sharding.httpsync.io/key; {UNSHARDED}: without the label) "
            "and kind.",
            ["shard", "kind"],
            registry=registry,
        )
        # ---- what the alerts watch
        self.source_ready = Gauge(
            "httpsync_source_ready",
            "1 when the source is Ready, else 0 (not set for a suspended source).",
            ["namespace", "source"],
            registry=registry,
        )
        self.source_ready_changed = Gauge(
            "httpsync_source_ready_last_transition_timestamp_seconds",
            "Unix time of the source's last Ready transition (Ready's lastTransitionTime).",
            ["namespace", "source"],
            registry=registry,
        )
        self.source_interval = Gauge(
            "httpsync_source_interval_seconds",
            "The interval a source is synced at (not set for a suspended source).",
            ["namespace", "source"],
            registry=registry,
        )
        self.mapping_interval = Gauge(
            "httpsync_mapping_interval_seconds",
            "The interval a mapping is synced at: its source's (not set while the source is suspended).",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.deletion_guard_trips = Counter(
            "httpsync_deletion_guard_trips_total",
            "Syncs whose deletions the deletion guard held back (spec.deletionGuard).",
            ["namespace", "mapping"],
            registry=registry,
        )
        self.sink_errors = Counter(
            "httpsync_sink_errors_total",
            "Entities the sink refused, plus syncs that failed at the sink (reason SinkFailed).",
            ["namespace", "mapping"],
            registry=registry,
        )

    # ---- calls for the sync loop (httpsync.controller.loop / reconcile)

    @contextmanager
    def sync_slot(self, *, queued_at: float, due_at: float | None = None) -> Iterator[None]:
        """Around one source sync, entered once it has a slot: ``queued_at`` is the ``time.time()`` it started
        waiting for one, ``due_at`` the ``time.time()`` it was scheduled for (None: on demand, no drift)."""
        now = time.time()
        self.queue_wait.observe(max(0.0, now - queued_at))
        if due_at is not None:
            self.schedule_drift.observe(max(0.0, now - due_at))
        self.syncs_in_flight.inc()
        try:
            yield
        finally:
            self.syncs_in_flight.dec()

    def drift(self, namespace: str, source: str, seconds: float) -> None:
        """A scheduled sync of a source started ``seconds`` after its due time."""
        self.schedule_drift_last.labels(namespace, source).set(max(0.0, seconds))

    def source_state(self, namespace: str, source: str, *, ready: bool, since: float, interval: float | None) -> None:
        """After each status write of a source: Ready, its lastTransitionTime (Unix time) and its effective
        interval; ``interval`` None (suspended) clears the series the alerts read."""
        if interval is None:
            self.forget_source(namespace, source)
            return
        self.source_ready.labels(namespace, source).set(1 if ready else 0)
        self.source_ready_changed.labels(namespace, source).set(since)
        self.source_interval.labels(namespace, source).set(interval)

    def sync_result(self, namespace: str, mapping: str, *, deletion_blocked: bool, sink_errors: int) -> None:
        """After each sync of a mapping: whether the deletion guard held deletions back, and how many sink errors
        (``entities_failed``, plus 1 when the sync failed with reason SinkFailed)."""
        if deletion_blocked:
            self.deletion_guard_trips.labels(namespace, mapping).inc()
        else:
            self.deletion_guard_trips.labels(namespace, mapping)  # the series exists at 0: increase() sees a trip
        self.sink_errors.labels(namespace, mapping).inc(sink_errors)

    def forget_source(self, namespace: str, source: str) -> None:
        """Drop a deleted (or suspended) source's series keyed by (namespace, source)."""
        _remove((self.source_ready, self.source_ready_changed, self.source_interval, self.schedule_drift_last),
                namespace, source)  # fmt: skip

    def forget_interval(self, namespace: str, mapping: str) -> None:
        """The mapping's source is suspended: no interval, so no staleness alert."""
        _remove((self.mapping_interval,), namespace, mapping)

    def forget_mapping(self, namespace: str, mapping: str) -> None:
        """Drop a deleted mapping's series keyed by (namespace, mapping), so they do not pile up."""
        _remove(
            (
                self.last_success,
                self.entity_count,
                self.entities_upserted,
                self.entities_deleted,
                self.items_fetched,
                self.mapping_interval,
                self.entities_conflicting,
                self.deletion_guard_trips,
                self.sink_errors,
            ),
            namespace,
            mapping,
        )

    def names(self) -> set[str]:
        """Every series name this registry can expose: a gauge's name, a counter's with _total, a histogram's
        with _bucket, _sum and _count (what a PromQL expression may select)."""
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        out: set[str] = set()
        for family in self.registry.collect():
            out.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        return out


_metrics: Metrics | None = None


def _remove(metrics: Iterable[Any], *labels: str) -> None:
    """Drop the series of these label values from each metric (those it never had: nothing)."""
    for metric in metrics:
        with contextlib.suppress(KeyError):
            metric.remove(*labels)


def metrics() -> Metrics:
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr)
