"""The one small interface every sink implements, and the memory of what was pushed.

A *sink* is where entities land (embedded SQLite catalog, Port, a webhook, or nowhere).
A *state store* remembers, per mapping, identifier -> content hash of what was last pushed, so
an unchanged entity is not pushed again and a vanished one is deleted after a fully
successful sync. Both are driven by :func:`httpsync.engine.sync.sync_mapping`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from httpsync.engine.types import Entity, EntityRef


@dataclass(slots=True)
class SinkReport:
    """Outcome of one batch: the refs that failed, with a message each (not fatal to the batch)."""

    failed: list[tuple[EntityRef, str]] = field(default_factory=list)


class Sink(Protocol):
    name: str

    async def upsert(self, owner: str, entities: Sequence[Entity]) -> SinkReport:
        """Create or replace entities. ``owner`` is the mapping key (namespace/name) that produced them."""
        ...

    async def delete(self, owner: str, refs: Sequence[EntityRef]) -> SinkReport: ...

    async def aclose(self) -> None: ...


class ListableSink(Sink, Protocol):
    def list_owned(self, owner: str) -> AsyncIterator[EntityRef]:
        """Every entity the sink holds for this owner (used to rebuild lost state)."""
        ...


class MappingState(Protocol):
    """Change-detection memory of one mapping for the duration of one sync."""

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        """Mark entities as seen in this sync; return (those to push, count unchanged)."""
        ...

    async def known_count(self) -> int:
        """How many entities the mapping owned before this sync."""
        ...

    async def stale(self) -> list[EntityRef]:
        """Entities owned before this sync and not seen in it."""
        ...

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        """Record what the sink accepted. Called per batch for pushes and once for deletes."""
        ...

    async def close(self) -> None: ...


class StateStore(Protocol):
    async def open(self, owner: str) -> MappingState: ...

    def export_rows(self, owner: str) -> AsyncIterator[tuple[str, str, str]]:
        """(blueprint, identifier, content hash as hex) of everything the owner pushed."""
        ...

    async def import_rows(
        self, owner: str, rows: AsyncIterable[tuple[str, str, str]] | Iterable[tuple[str, str, str]]
    ) -> int:
        """Replace the owner's memory with ``rows`` (as export_rows gives them)."""
        ...

    async def forget(self, owner: str) -> list[EntityRef]:
        """Drop a mapping's memory and return what it owned (for deletion on mapping removal)."""
        ...

    async def aclose(self) -> None: ...
