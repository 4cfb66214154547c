"""Operator-level configuration: flags of ``httpsync run``, with HTTPSYNC_* environment fallbacks
(the Helm chart sets the environment)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from httpsync.api.models import MIN_INTERVAL_SECONDS
from httpsync.http.policy import DEFAULT_DENY

log = logging.getLogger("httpsync.controller")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, "").replace(",", " ").split() if x.strip()]


@dataclass
class OperatorConfig:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    catalog_path: Path = field(
        default_factory=lambda: Path(os.environ.get("HTTPSYNC_CATALOG", "/tmp/httpsync/catalog.db"))
    )
    metrics_port: int | None = 8080
    health_port: int | None = 8081
    destination_allow: list[str] = field(default_factory=lambda: _env_list("HTTPSYNC_DESTINATION_ALLOW"))
    destination_deny: list[str] = field(
        default_factory=lambda: _env_list("HTTPSYNC_DESTINATION_DENY") or list(DEFAULT_DENY)
    )
    # The default sink (Helm values defaultSink.*): catalog, port or webhook.
    default_sink: str = field(default_factory=lambda: os.environ.get("HTTPSYNC_DEFAULT_SINK", "catalog"))
    port_base_url: str = field(
        default_factory=lambda: os.environ.get("HTTPSYNC_PORT_BASE_URL", "https://api.getport.io")
    )
    port_client_id: str | None = field(default_factory=lambda: os.environ.get("HTTPSYNC_PORT_CLIENT_ID"))
    port_client_secret: str | None = field(default_factory=lambda: os.environ.get("HTTPSYNC_PORT_CLIENT_SECRET"))
    webhook_url: str | None = field(default_factory=lambda: os.environ.get("HTTPSYNC_WEBHOOK_URL"))
    webhook_secret: str | None = field(default_factory=lambda: os.environ.get("HTTPSYNC_WEBHOOK_SECRET"))
    # Change-detection memory for remote sinks (Port, webhook): a local file on the data volume
    # (/var/lib/httpsync in the chart; see docs/helm.md for what losing it costs).
    state_path: Path = field(default_factory=lambda: Path(os.environ.get("HTTPSYNC_STATE", "/tmp/httpsync/state.db")))
    mapping_concurrency: int = 4  # mapping syncs at once within one source
    # Source syncs at once across the operator (``--max-concurrent-syncs``, HTTPSYNC_MAX_CONCURRENT_SYNCS).
    max_concurrent_syncs: int = field(
        default_factory=lambda: int(os.environ.get("HTTPSYNC_MAX_CONCURRENT_SYNCS") or 4 * (os.cpu_count() or 1))
    )
    jitter: float = 0.05  # +- share of the interval
    # The shortest interval a source is synced at (``--min-interval``, HTTPSYNC_MIN_INTERVAL).
    min_interval_seconds: float = MIN_INTERVAL_SECONDS
    # High availability (``--leader-elect``): replicas of one shard share a Lease; one operates.
    leader_elect: bool = field(default_factory=lambda: _env_flag("HTTPSYNC_LEADER_ELECT"))
    leader_election_namespace: str = field(
        default_factory=lambda: os.environ.get("HTTPSYNC_LEADER_ELECTION_NAMESPACE")
        or os.environ.get("POD_NAMESPACE")
        or "default"
    )
    leader_election_id: str = field(default_factory=lambda: os.environ.get("HTTPSYNC_LEADER_ELECTION_ID", "httpsync"))
    lease_duration_seconds: float = 15.0
    # Every request to the Kubernetes API (ours and kopf's) gives up after this (``--api-timeout``,
    # HTTPSYNC_API_TIMEOUT): a stalled API server fails a step, which its loop retries with backoff.
    api_timeout_seconds: float = field(default_factory=lambda: float(os.environ.get("HTTPSYNC_API_TIMEOUT", "30")))
    # The shard this operator syncs (``--shard``, HTTPSYNC_SHARD): the resources labelled
    # sharding.httpsync.io/key=<shard>; None: those without the label (httpsync.controller.sharding).
    shard: str | None = field(default_factory=lambda: os.environ.get("HTTPSYNC_SHARD") or None)


class IntervalFloor:
    """The shortest interval the operator syncs a source at. The CRD refuses an ``interval`` under
    30s, but a source created before that rule keeps its old one (``interval: 0s`` meant several syncs
    a second): the operator reads it as the floor and logs that once per source and interval.

    One per process (:data:`min_interval`), set at start-up from :attr:`OperatorConfig.min_interval_seconds`.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._logged: set[tuple[str, float]] = set()

    def __call__(self, interval: float, what: str) -> float:
        """``interval`` (seconds) of ``what`` (a source, for the log), raised to the floor."""
        if interval >= self.seconds:
            return interval
        if (what, interval) not in self._logged:
            self._logged.add((what, interval))
            log.warning(
                "%s: spec.interval of %gs is below the minimum of %gs; syncing every %gs",
                what, interval, self.seconds, self.seconds,
            )  # fmt: skip
        return self.seconds


min_interval = IntervalFloor(MIN_INTERVAL_SECONDS)
