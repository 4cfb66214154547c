"""A sink that discards everything (benchmarks, dry runs)."""

from __future__ import annotations

from collections.abc import Sequence

from httpsync.engine.ports import SinkReport
from httpsync.engine.types import Entity, EntityRef


class NullSink:
    name = "null"

    def __init__(self) -> None:
        self.upserted = 0
        self.deleted = 0

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        self.upserted += len(entities)
        return SinkReport()

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        self.deleted += len(refs)
        return SinkReport()

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        return None

    async def aclose(self) -> None:
        return None
