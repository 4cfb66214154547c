"""Build the operator's service from its configuration (called once, at kopf start-up)."""

from __future__ import annotations

from httpsync.controller.config import OperatorConfig
from httpsync.controller.kube import KubeApi
from httpsync.controller.metrics import metrics
from httpsync.controller.service import SyncService


async def build_service(config: OperatorConfig) -> SyncService:
    from httpsync.controller.sinks import Sinks

    sinks = await Sinks.open(config)
    kube = await KubeApi.create()
    return SyncService(config, kube, sinks, metrics())
