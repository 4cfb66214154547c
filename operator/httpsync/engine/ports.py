"""What the engine needs from the outside: where entities go (a :class:`Sink`) and the memory of what
was pushed (a :class:`StateStore`). Both are driven by :func:`httpsync.engine.sync.sync_mapping`;
the implementations live in :mod:`httpsync.sinks` and :mod:`httpsync.state`.

A *sink* is where entities land (embedded SQLite catalog, Port, a webhook, or nowhere).
A *state store* remembers, per mapping (its *owner*, ``namespace/name``), identifier -> content hash
of what the sink accepted, so an unchanged entity is not pushed again and a vanished one is deleted
after a fully successful sync.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from httpsync.engine.types import Entity, EntityRef


@dataclass(slots=True)
class SinkReport:
    """Outcome of one batch: the refs that failed, with a message each (not fatal to the batch), and
    the entities the sink refused to send at all because they cannot be valid there (``invalid``:
    counted as mapping errors, not as the sink's failures)."""

    failed: list[tuple[EntityRef, str]] = field(default_factory=list)
    invalid: list[tuple[EntityRef, str]] = field(default_factory=list)


class Sink(Protocol):
    name: str

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
        """Create or replace entities. ``owner`` is the mapping that produced them; ``sync_id`` names
        the sync they belong to (one per sync of a mapping), None outside a sync."""
        ...

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        """Delete entities the owner pushed before."""
        ...

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        """Called once after a fully successful sync whose deletions were not blocked: the owner now
        has ``entities`` entities, and ``full`` says this sync upserted every one of them (none was
        skipped as unchanged)."""
        ...

    async def aclose(self) -> None: ...


class MappingState(Protocol):
    """Change-detection memory of one mapping for the duration of one sync."""

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        """Mark entities as seen in this sync; return (those to push, count unchanged). An entity
        seen before in this sync (the same blueprint and identifier) is a duplicate: the first one
        wins, later ones are neither pushed nor counted (see :meth:`take_duplicates`)."""
        ...

    def take_duplicates(self) -> list[EntityRef]:
        """The duplicates the diffs met since the last call (one ref per duplicate item)."""
        ...

    def take_conflicts(self) -> list[tuple[EntityRef, str]]:
        """The entities the diffs met since the last call that another mapping (named) produces too."""
        ...

    async def release_shared(self) -> int:
        """Before deleting: let go of the stale entities another mapping still produces (they are not
        deleted; the other mapping writes them again as its own). Returns how many."""
        ...

    async def known_count(self) -> int:
        """How many entities the mapping owned before this sync."""
        ...

    async def stale_count(self) -> int:
        """How many entities owned before this sync were not seen in it."""
        ...

    def stale_batches(self, size: int) -> AsyncIterator[list[EntityRef]]:
        """The entities owned before this sync and not seen in it, ``size`` at a time; committing
        deletions between batches is safe."""
        ...

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        """Record what the sink accepted. Called per batch for pushes and per batch for deletes."""
        ...

    async def close(self) -> None: ...


class StateStore(Protocol):
    async def open(self, owner: str) -> MappingState:
        """Start a sync of ``owner``."""
        ...

    def owned(self, owner: str) -> AsyncIterator[EntityRef]:
        """Every entity the owner's memory holds, in (blueprint, identifier) order."""
        ...

    def owned_exclusively(self, owner: str) -> AsyncIterator[EntityRef]:
        """The entities of :meth:`owned` no other mapping produces (safe to delete with the mapping)."""
        ...

    async def forget(self, owner: str) -> None:
        """Drop a mapping's memory (after its entities were deleted, or to keep them unmanaged). What
        other mappings produce too is written again by their next sync."""
        ...

    async def aclose(self) -> None: ...
