"""Ownership and drift against what the sink really holds, for sinks that can list what a mapping
wrote (the Port sink: ``owned_in_port``, a search by datasource), as Port's own integration does.

At the start of a sync of a mapping, :func:`open_state`:

- when the local state of the mapping is empty (a fresh volume, a CronJob pod, state lost), lists
  the entities the mapping wrote in the sink and takes them as owned: entities the API no longer
  produces are stale (deleted, within the deletion guard) instead of orphaned, and entities the sink
  already holds as the mapping would write them are not pushed again;
- with the sink's ``reconcile_drift`` on, does the same at every sync: an entity deleted or changed
  in the sink by hand is pushed again even if the API did not change it.

The comparison is Port's merge: an entity is in sync when each title, icon and team the mapping
sets, and each property and relation it produces, has that value in the sink (what else the sink
holds is left alone by ``merge=true`` and not compared). The listing is held in memory for the sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from httpsync.api.models import HttpEndpointMappingSpec
from httpsync.engine.ports import MappingState, Sink, StateStore
from httpsync.engine.types import Entity, EntityRef

log = logging.getLogger("httpsync.drift")

Listing = Mapping[tuple[str, str], Mapping[str, Any]]


class ListingSink(Protocol):
    reconcile_drift: bool

    async def owned_in_port(self, owner: str, blueprints: Sequence[str]) -> Listing: ...


def static_blueprints(mapping: HttpEndpointMappingSpec) -> list[str]:
    """The blueprint of the mapping when its expression is a string literal (``'"service"'``), else
    none known before mapping (one search for every blueprint)."""
    expr = str(mapping.mappings.blueprint).strip()
    try:
        value = json.loads(expr)
    except ValueError:
        return []
    return [value] if isinstance(value, str) else []


def in_sync(entity: Entity, held: Mapping[str, Any]) -> bool:
    """Whether pushing ``entity`` with merge would change nothing in ``held``."""
    for key in ("title", "icon", "team"):
        value = entity.get(key)
        if value is not None and held.get(key) != value:
            return False
    for group in ("properties", "relations"):
        theirs = held.get(group) or {}
        for name, value in (entity.get(group) or {}).items():
            if theirs.get(name) != value:
                return False
    return True


async def open_state(
    sink: Sink, state: StateStore, owner: str, mapping: HttpEndpointMappingSpec
) -> tuple[MappingState, int]:
    """The state of this sync of ``owner`` and how many entities it owned before, reconciled with
    what the sink holds when the sink can list it (see the module docstring)."""
    lister: ListingSink | None = sink if hasattr(sink, "owned_in_port") else None  # type: ignore[assignment]
    if lister is None:
        mstate = await state.open(owner)
        return mstate, await mstate.known_count()
    drift = bool(getattr(lister, "reconcile_drift", False))
    first = await state.open(owner)
    known = await first.known_count()
    if known and not drift:
        return first, known  # the sync goes on with this state (and its lease)
    try:
        listing = await lister.owned_in_port(owner, static_blueprints(mapping))
        # What the sink holds and the state does not know becomes owned under this (older)
        # generation: what this sync does not see again is stale. Its hash is the sink's content,
        # so the diff below compares each one with the sink's.
        owned = {(r.blueprint, r.identifier) async for r in state.owned(owner)} if known else set()
        found = [_as_entity(key, held) for key, held in listing.items() if key not in owned]
        if found:
            await first.commit(found, [])
        if not known and found:
            log.info("mapping %s: no local state; %d entities it wrote found in the sink", owner, len(found))
    finally:
        await first.close()
    mstate = await state.open(owner)
    return _Reconciled(mstate, listing), await mstate.known_count()


def _as_entity(key: tuple[str, str], held: Mapping[str, Any]) -> Entity:
    blueprint, identifier = key
    entity: dict[str, Any] = {"identifier": identifier, "blueprint": blueprint}
    for k in ("title", "team", "icon"):
        entity[k] = held.get(k)
    entity["properties"] = dict(held.get("properties") or {})
    entity["relations"] = dict(held.get("relations") or {})
    return entity  # type: ignore[return-value]


class _Reconciled:
    """A :class:`MappingState` whose diff also asks the sink's listing: unchanged entities missing
    or changed in the sink are pushed again; changed ones the sink already holds are only recorded."""

    def __init__(self, inner: MappingState, listing: Listing) -> None:
        self._inner = inner
        self._listing = listing
        self.restored = 0  # pushed again though unchanged in the API
        self.adopted = 0  # recorded without a push: the sink held them already

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        changed, unchanged = await self._inner.diff(entities)
        listing = self._listing
        keys = {(e["blueprint"], e["identifier"]) for e in changed}
        push: list[Entity] = []
        adopt: list[Entity] = []
        for e in changed:
            held = listing.get((e["blueprint"], e["identifier"]))
            (adopt if held is not None and in_sync(e, held) else push).append(e)
        seen: set[tuple[str, str]] = set()
        for e in entities:
            key = (e["blueprint"], e["identifier"])
            if key in keys or key in seen:
                continue
            seen.add(key)
            held = listing.get(key)
            if held is None or not in_sync(e, held):
                push.append(e)
                unchanged -= 1
                self.restored += 1
        if adopt:
            await self._inner.commit(adopt, [])
            self.adopted += len(adopt)
        return push, unchanged + len(adopt)

    def take_duplicates(self) -> list[EntityRef]:
        return self._inner.take_duplicates()

    def take_conflicts(self) -> list[tuple[EntityRef, str]]:
        return self._inner.take_conflicts()

    async def release_shared(self) -> int:
        return await self._inner.release_shared()

    async def known_count(self) -> int:
        return await self._inner.known_count()

    async def stale_count(self) -> int:
        return await self._inner.stale_count()

    def stale_batches(self, size: int) -> AsyncIterator[list[EntityRef]]:
        return self._inner.stale_batches(size)

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        await self._inner.commit(pushed, deleted)

    async def close(self) -> None:
        await self._inner.close()
