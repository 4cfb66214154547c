"""Prometheus metrics, served on their own port. Labels never carry item identifiers."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800)


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

    def forget_mapping(self, namespace: str, mapping: str) -> None:
        """Drop a deleted mapping's series keyed by (namespace, mapping), so they do not pile up."""
        for metric in (
            self.last_success,
            self.entity_count,
            self.entities_upserted,
            self.entities_deleted,
            self.items_fetched,
        ):
            try:
                metric.remove(namespace, mapping)
            except KeyError:
                pass


_metrics: Metrics | None = None


def metrics() -> Metrics:
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr)
