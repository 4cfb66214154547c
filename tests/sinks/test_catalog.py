"""The embedded SQLite catalog (sink) and the SQLite state store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from httpsync.engine.types import Entity, EntityRef
from httpsync.sinks import Catalog, NullSink, SqliteStateStore, default_catalog_path, entity_hash


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


async def sync_once(catalog: Catalog, owner: str, entities: list[Entity]) -> tuple[int, int, list[EntityRef]]:
    """A minimal sync: diff, push, commit; returns (pushed, unchanged, stale)."""
    state = await catalog.state.open(owner)
    to_push, unchanged = await state.diff(entities)
    await catalog.sink.upsert(owner, to_push)
    await state.commit(to_push, [])
    stale = await state.stale()
    await state.close()
    return len(to_push), unchanged, stale


@pytest.fixture
async def catalog(tmp_path: Path) -> Any:
    c = await Catalog.open(tmp_path / "catalog.db")
    yield c
    await c.aclose()


async def test_upsert_stores_entities_with_their_owner(catalog: Catalog) -> None:
    await catalog.sink.upsert("ns/users", [ent("b", email="b@x"), ent("a"), ent("p1", "project")])
    listed = await catalog.sink.list_entities()
    assert [(e["blueprint"], e["identifier"]) for e in listed] == [("project", "p1"), ("user", "a"), ("user", "b")]
    assert listed[2]["properties"] == {"email": "b@x"}
    assert [e["identifier"] for e in await catalog.sink.list_entities("user")] == ["a", "b"]
    owned = [r async for r in catalog.sink.list_owned("ns/users")]
    assert owned == [EntityRef("project", "p1"), EntityRef("user", "a"), EntityRef("user", "b")]
    assert [r async for r in catalog.sink.list_owned("ns/other")] == []


async def test_upsert_replaces_by_blueprint_and_identifier(catalog: Catalog) -> None:
    await catalog.sink.upsert("o", [ent("a", v=1)])
    await catalog.sink.upsert("o", [ent("a", v=2), ent("a", "team")])
    listed = await catalog.sink.list_entities()
    assert [(e["blueprint"], e["properties"]) for e in listed] == [("team", {}), ("user", {"v": 2})]
    assert await catalog.sink.count() == 2


async def test_delete_only_removes_rows_the_owner_still_owns(catalog: Catalog) -> None:
    await catalog.sink.upsert("first", [ent("a"), ent("b")])
    await catalog.sink.upsert("second", [ent("b")])  # b changed hands
    await catalog.sink.delete("first", [EntityRef("user", "a"), EntityRef("user", "b")])
    assert [(e["identifier"]) for e in await catalog.sink.list_entities()] == ["b"]
    assert await catalog.sink.count("second") == 1


async def test_unchanged_entities_are_not_pushed_again(catalog: Catalog) -> None:
    entities = [ent(str(i), n=i) for i in range(10)]
    assert await sync_once(catalog, "o", entities) == (10, 0, [])
    assert await sync_once(catalog, "o", entities) == (0, 10, [])
    entities[3] = ent("3", n="changed")
    assert await sync_once(catalog, "o", entities) == (1, 9, [])


async def test_stale_is_what_was_owned_and_not_seen(catalog: Catalog) -> None:
    await sync_once(catalog, "o", [ent("a"), ent("b"), ent("c")])
    await sync_once(catalog, "other", [ent("z")])
    state = await catalog.state.open("o")
    assert await state.known_count() == 3
    await state.diff([ent("b")])
    assert await state.stale() == [EntityRef("user", "a"), EntityRef("user", "c")]
    assert await state.stale_count() == 2
    await state.commit([], [EntityRef("user", "a")])
    assert await state.stale() == [EntityRef("user", "c")]
    await state.close()


async def test_a_changed_entity_whose_push_failed_is_not_stale(catalog: Catalog) -> None:
    await sync_once(catalog, "o", [ent("a", v=1)])
    state = await catalog.state.open("o")
    to_push, _ = await state.diff([ent("a", v=2)])
    assert len(to_push) == 1
    await state.commit([], [])  # the sink rejected it
    assert await state.stale() == []
    await state.close()
    assert (await sync_once(catalog, "o", [ent("a", v=2)]))[0] == 1  # pushed again next time


async def test_duplicates_within_a_batch_last_one_wins(catalog: Catalog) -> None:
    pushed, unchanged, _ = await sync_once(catalog, "o", [ent("a", v=1), ent("a", v=2)])
    assert (pushed, unchanged) == (1, 0)
    assert (await catalog.sink.list_entities())[0]["properties"] == {"v": 2}


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with await Catalog.open(path) as c:
        await sync_once(c, "o", [ent("a"), ent("b")])
    async with await Catalog.open(path) as c:
        state = await c.state.open("o")
        assert await state.known_count() == 2
        to_push, unchanged = await state.diff([ent("a")])
        assert (to_push, unchanged) == ([], 1)
        assert await state.stale() == [EntityRef("user", "b")]
        await state.close()
        assert [e["identifier"] for e in await c.sink.list_entities()] == ["a", "b"]


async def test_stale_batches_are_bounded_and_survive_deletions_between_them(catalog: Catalog) -> None:
    await sync_once(catalog, "o", [ent(f"{i:04d}") for i in range(2500)])
    state = await catalog.state.open("o")
    await state.diff([ent("0007")])
    seen = 0
    async for batch in state.stale_batches(1000):
        assert len(batch) <= 1000
        seen += len(batch)
        await state.commit([], batch)
    assert seen == 2499
    assert await state.stale() == []
    await state.close()


async def test_forget_returns_and_drops_the_owners_memory(catalog: Catalog) -> None:
    await sync_once(catalog, "o", [ent("a"), ent("b")])
    assert await catalog.state.forget("o") == [EntityRef("user", "a"), EntityRef("user", "b")]
    assert await catalog.state.forget("o") == []
    state = await catalog.state.open("o")
    assert await state.known_count() == 0
    await state.close()


async def test_state_store_works_on_its_own_file_for_another_sink(tmp_path: Path) -> None:
    store = await SqliteStateStore.open_file(tmp_path / "state.db")
    sink = NullSink()
    state = await store.open("o")
    to_push, _ = await state.diff([ent("a")])
    await sink.upsert("o", to_push)
    await state.commit(to_push, [])
    await state.close()
    state = await store.open("o")
    assert await state.diff([ent("a")]) == ([], 1)
    await state.close()
    await store.aclose()
    assert sink.upserted == 1


async def test_opening_a_missing_catalog_without_create_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await Catalog.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_default_catalog_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPSYNC_CATALOG", raising=False)
    assert default_catalog_path() == "./httpsync-catalog.db"
    monkeypatch.setenv("HTTPSYNC_CATALOG", "/data/c.db")
    assert default_catalog_path() == "/data/c.db"
    assert default_catalog_path("x.db") == "x.db"


def test_entity_hash_ignores_key_order_and_sees_changes() -> None:
    a = ent("a", x=1, y=2)
    b = dict(reversed(list(a.items())))
    b["properties"] = {"y": 2, "x": 1}
    assert entity_hash(a) == entity_hash(b)  # type: ignore[arg-type]
    assert entity_hash(a) != entity_hash(ent("a", x=1, y=3))


async def test_state_rows_export_and_import(tmp_path: Path) -> None:
    async with await Catalog.open(tmp_path / "a.db") as a:
        await sync_once(a, "o", [ent("b"), ent("a"), ent("c", "team")])
        exported = [r async for r in a.state.export_rows("o")]
    assert [(b, i) for b, i, _ in exported] == [("team", "c"), ("user", "a"), ("user", "b")]
    assert exported[1][2] == entity_hash(ent("a")).hex()

    async def rows() -> Any:
        for r in exported:
            yield r

    async with await Catalog.open(tmp_path / "b.db") as b:  # a fresh working copy, restored
        await sync_once(b, "o", [ent("stale-local")])
        assert await b.state.import_rows("o", rows()) == 3
        assert await b.state.owners() == ["o"]
        state = await b.state.open("o")
        assert await state.known_count() == 3
        assert await state.diff([ent("a"), ent("b")]) == ([], 2)  # unchanged: nothing to push
        assert await state.stale() == [EntityRef("team", "c")]
        await state.close()
