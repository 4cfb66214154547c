"""Build the operator's service from its configuration (called once, at kopf start-up)."""

from __future__ import annotations

from httpsync.controller.config import OperatorConfig
from httpsync.controller.kube import KubeApi
from httpsync.controller.metrics import metrics
from httpsync.controller.service import SyncService
from httpsync.http.policy import DestinationPolicy
from httpsync.sinks.factory import Sinks, SinkSettings


def sink_settings(config: OperatorConfig) -> SinkSettings:
    return SinkSettings(
        catalog_path=config.catalog_path,
        state_path=config.state_path,
        default_sink=config.default_sink,
        port_base_url=config.port_base_url,
        port_client_id=config.port_client_id,
        port_client_secret=config.port_client_secret,
        webhook_url=config.webhook_url,
        webhook_secret=config.webhook_secret,
        # A source's own sink (spec.sink URLs) goes through the operator's destination policy.
        policy=DestinationPolicy(allow=config.destination_allow, deny=config.destination_deny),
    )


async def build_service(config: OperatorConfig) -> SyncService:
    sinks = await Sinks.open(sink_settings(config))
    kube = await KubeApi.create(timeout=config.api_timeout_seconds)
    return SyncService(config, kube, sinks, metrics())
