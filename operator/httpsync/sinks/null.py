"""A sink that discards everything (benchmarks, dry runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from httpsync.engine.types import Entity, EntityRef
from httpsync.sinks.base import SinkReport


class NullSink:
    name = "null"

    def __init__(self) -> None:
        self.upserted = 0
        self.deleted = 0

    async def upsert(self, owner: str, entities: Sequence[Entity]) -> SinkReport:
        self.upserted += len(entities)
        return SinkReport()

    async def delete(self, owner: str, refs: Sequence[EntityRef]) -> SinkReport:
        self.deleted += len(refs)
        return SinkReport()

    async def list_owned(self, owner: str) -> AsyncIterator[EntityRef]:
        return
        yield  # an empty async generator

    async def aclose(self) -> None:
        return None
