"""Operator-level configuration: flags of ``httpsync run``, with HTTPSYNC_* environment fallbacks
(the Helm chart sets the environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from httpsync.http.policy import DEFAULT_DENY


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
    # Change-detection memory for remote sinks (Port, webhook): a local file, backed up to ConfigMaps.
    state_path: Path = field(default_factory=lambda: Path(os.environ.get("HTTPSYNC_STATE", "/tmp/httpsync/state.db")))
    mapping_concurrency: int = 4  # mapping syncs at once within one source
    jitter: float = 0.05  # +- share of the interval
    startup_delay_seconds: float = 0.0
