"""The SQLite state store: change detection, staleness by generation, keyset listing, forgetting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from httpsync.engine.ports import MappingState, StateStore
from httpsync.engine.types import Entity, EntityRef
from httpsync.sinks import NullSink
from httpsync.state.hashing import entity_hash
from httpsync.state.sqlite import SqliteStateStore


def ent(identifier: str, blueprint: str = "user", **props: Any) -> Entity:
    return {
        "identifier": identifier,
        "blueprint": blueprint,
        "title": f"T {identifier}",
        "team": None,
        "icon": None,
        "properties": props,
        "relations": {},
    }


async def stale_of(state: MappingState, size: int = 1000) -> list[EntityRef]:
    return [ref async for batch in state.stale_batches(size) for ref in batch]


async def sync_once(store: StateStore, owner: str, entities: list[Entity]) -> tuple[list[Entity], int, list[EntityRef]]:
    """A minimal sync whose sink accepts everything: diff, commit; returns (pushed, unchanged, stale)."""
    state = await store.open(owner)
    to_push, unchanged = await state.diff(entities)
    await state.commit(to_push, [])
    stale = await stale_of(state)
    await state.close()
    return to_push, unchanged, stale


async def counts(store: StateStore, owner: str, entities: list[Entity]) -> tuple[int, int, list[EntityRef]]:
    pushed, unchanged, stale = await sync_once(store, owner, entities)
    return len(pushed), unchanged, stale


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    s = await SqliteStateStore.open_file(tmp_path / "state.db")
    yield s
    await s.aclose()


async def test_unchanged_entities_are_not_pushed_again(store: SqliteStateStore) -> None:
    entities = [ent(str(i), n=i) for i in range(10)]
    assert await counts(store, "o", entities) == (10, 0, [])
    assert await counts(store, "o", entities) == (0, 10, [])
    entities[3] = ent("3", n="changed")
    assert await counts(store, "o", entities) == (1, 9, [])


async def test_stale_is_what_was_owned_and_not_seen(store: SqliteStateStore) -> None:
    await sync_once(store, "o", [ent("a"), ent("b"), ent("c")])
    await sync_once(store, "other", [ent("z")])
    state = await store.open("o")
    assert await state.known_count() == 3
    await state.diff([ent("b")])
    assert await stale_of(state) == [EntityRef("user", "a"), EntityRef("user", "c")]
    assert await state.stale_count() == 2
    await state.commit([], [EntityRef("user", "a")])
    assert await stale_of(state) == [EntityRef("user", "c")]
    assert await state.stale_count() == 1
    await state.close()


async def test_a_changed_entity_whose_push_failed_is_not_stale(store: SqliteStateStore) -> None:
    await sync_once(store, "o", [ent("a", v=1)])
    state = await store.open("o")
    to_push, _ = await state.diff([ent("a", v=2)])
    assert len(to_push) == 1
    await state.commit([], [])  # the sink rejected it
    assert await stale_of(state) == []
    await state.close()
    assert (await counts(store, "o", [ent("a", v=2)]))[0] == 1  # pushed again next time


async def test_duplicates_within_a_batch_first_one_wins(store: SqliteStateStore) -> None:
    pushed, unchanged, _ = await sync_once(store, "o", [ent("a", v=1), ent("a", v=2)])
    assert ([e["properties"] for e in pushed], unchanged) == ([{"v": 1}], 0)
    assert await counts(store, "o", [ent("a", v=1)]) == (0, 1, [])


async def test_duplicates_across_batches_first_one_wins_and_are_named(store: SqliteStateStore) -> None:
    state = await store.open("o")
    to_push, _ = await state.diff([ent("a", v=1), ent("b")])
    await state.commit(to_push, [])
    assert await state.diff([ent("a", v=2), ent("c"), ent("c")]) == ([ent("c")], 0)
    assert state.take_duplicates() == [EntityRef("user", "c"), EntityRef("user", "a")]
    assert state.take_duplicates() == []
    await state.close()


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStateStore.open_file(path)
    await sync_once(store, "o", [ent("a"), ent("b")])
    await store.aclose()
    store = await SqliteStateStore.open_file(path)
    try:
        state = await store.open("o")
        assert await state.known_count() == 2
        to_push, unchanged = await state.diff([ent("a")])
        assert (to_push, unchanged) == ([], 1)
        assert await stale_of(state) == [EntityRef("user", "b")]
        await state.close()
    finally:
        await store.aclose()


async def test_stale_batches_are_bounded_and_survive_deletions_between_them(store: SqliteStateStore) -> None:
    await sync_once(store, "o", [ent(f"{i:04d}") for i in range(2500)])
    state = await store.open("o")
    await state.diff([ent("0007")])
    seen = 0
    async for batch in state.stale_batches(1000):
        assert len(batch) <= 1000
        seen += len(batch)
        await state.commit([], batch)
    assert seen == 2499
    assert await stale_of(state) == []
    assert await state.stale_count() == 0
    await state.close()


async def test_owned_lists_the_owners_memory_in_key_order_a_page_at_a_time(store: SqliteStateStore) -> None:
    many = [ent(f"{i:04d}") for i in range(2345)]  # more than one page of keys
    await sync_once(store, "o", [ent("b"), ent("a"), ent("c", "team"), *many])
    await sync_once(store, "other", [ent("z")])
    owned = [r async for r in store.owned("o")]
    users = [EntityRef("user", e["identifier"]) for e in many] + [EntityRef("user", "a"), EntityRef("user", "b")]
    assert owned == [EntityRef("team", "c"), *users]
    assert [r async for r in store.owned("nobody")] == []


async def test_forget_drops_the_owners_memory_only(store: SqliteStateStore) -> None:
    await sync_once(store, "o", [ent("a"), ent("b")])
    await sync_once(store, "other", [ent("a")])
    await store.forget("o")
    await store.forget("o")  # forgetting twice is fine
    assert [r async for r in store.owned("o")] == []
    assert [r async for r in store.owned("other")] == [EntityRef("user", "a")]
    state = await store.open("o")
    assert await state.known_count() == 0
    assert await state.diff([ent("a")]) == ([ent("a")], 0)  # pushed again: nothing is remembered
    await state.close()


async def test_state_store_works_for_another_sink(store: SqliteStateStore) -> None:
    sink = NullSink()
    state = await store.open("o")
    to_push, _ = await state.diff([ent("a")])
    await sink.upsert("o", to_push)
    await state.commit(to_push, [])
    await state.close()
    state = await store.open("o")
    assert await state.diff([ent("a")]) == ([], 1)
    await state.close()
    assert sink.upserted == 1


def test_entity_hash_ignores_key_order_and_sees_changes() -> None:
    a = ent("a", x=1, y=2)
    b = dict(reversed(list(a.items())))
    b["properties"] = {"y": 2, "x": 1}
    assert entity_hash(a) == entity_hash(b)  # type: ignore[arg-type]
    assert entity_hash(a) != entity_hash(ent("a", x=1, y=3))


async def test_an_entity_of_two_owners_is_kept_and_rewritten_by_the_one_left(store: SqliteStateStore) -> None:
    for owner in ("ns-a/alpha", "ns-b/beta"):
        await sync_once(store, owner, [ent("x"), ent(owner[:4])])
    assert [r async for r in store.owned_exclusively("ns-b/beta")] == [EntityRef("user", "ns-b")]
    assert [r async for r in store.owned("ns-b/beta")] == [EntityRef("user", "ns-b"), EntityRef("user", "x")]
    await store.forget("ns-b/beta")
    state = await store.open("ns-a/alpha")
    to_push, unchanged = await state.diff([ent("x"), ent("ns-a")])
    assert (to_push, unchanged) == ([ent("x")], 1)  # written again, as alpha's
    assert state.take_conflicts() == []
    await state.close()


async def test_a_stale_entity_another_owner_produces_is_released_not_deleted(store: SqliteStateStore) -> None:
    for owner in ("o1", "o2"):
        await sync_once(store, owner, [ent("x")])
    state = await store.open("o2")
    assert await state.diff([]) == ([], 0)
    assert await state.release_shared() == 1
    assert await state.stale_count() == 0
    await state.close()
    state = await store.open("o1")
    assert await state.diff([ent("x")]) == ([ent("x")], 0)
    await state.close()
