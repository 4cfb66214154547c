"""The service behind the kopf handlers: the parts wired together, nothing more.

- :mod:`.objects`: the resources parsed into their models at the handler boundary;
- :mod:`.loop`: when a source syncs (timing, suspend, on-demand);
- :mod:`.reconcile`: what one sync of a source does (and the finalizer's entity removal);
- :mod:`.summarize`: pure functions from outcomes to status models;
- :mod:`.patch`: the one status write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from httpsync.controller.config import OperatorConfig
from httpsync.controller.kube import KubeApi
from httpsync.controller.loop import Scheduler
from httpsync.controller.metrics import Metrics
from httpsync.controller.objects import MappingObject
from httpsync.controller.patch import StatusWriter
from httpsync.controller.reconcile import Reconciler
from httpsync.controller.summarize import mapping_first_contact
from httpsync.sinks.factory import Sinks


class SyncService:
    def __init__(self, config: OperatorConfig, kube: KubeApi, sinks: Sinks, metrics: Metrics) -> None:
        self.config = config
        self.kube = kube
        self.sinks = sinks
        self.writer = StatusWriter(kube)
        self.reconciler = Reconciler(config, kube, sinks, metrics)
        self.scheduler = Scheduler(
            self.reconciler, self.writer, max_syncs=config.max_concurrent_syncs, metrics=metrics, shard=config.shard
        )

    @property
    def loops(self) -> Mapping[tuple[str, str], object]:
        """The running source loops (read-only view, for the probe and tests)."""
        return self.scheduler.loops

    async def mapping_seen(
        self, mapping: MappingObject, *, source_exists: bool, source_suspended: bool = False
    ) -> None:
        """Every mapping event: first-contact conditions (or SourceNotFound, or Suspended), then wake
        its source."""
        status = mapping_first_contact(mapping, source_exists=source_exists, source_suspended=source_suspended)
        await self.writer.mapping(mapping.meta, status)
        if source_exists and not source_suspended:
            self.scheduler.mapping_changed(mapping)

    async def aclose(self) -> None:
        for closer in (self.reconciler.transports.aclose, self.sinks.aclose, self.kube.aclose):
            with contextlib.suppress(Exception):
                await closer()
