"""The embedded SQLite catalog: the sink, and the catalog file holding entities and state together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from httpsync.engine.types import Entity, EntityRef
from httpsync.sinks import Catalog, default_catalog_path
from tests.state.test_sqlite_state import ent, stale_of


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    c = await Catalog.open(tmp_path / "catalog.db")
    yield c
    await c.aclose()


async def catalog_sync(catalog: Catalog, owner: str, entities: list[Entity]) -> tuple[int, int]:
    """A minimal sync into the catalog: diff, push, commit; returns (pushed, unchanged)."""
    state = await catalog.state.open(owner)
    to_push, unchanged = await state.diff(entities)
    await catalog.sink.upsert(owner, to_push, sync_id="s1")
    await state.commit(to_push, [])
    await state.close()
    return len(to_push), unchanged


async def test_upsert_stores_entities_with_their_owner(catalog: Catalog) -> None:
    await catalog.sink.upsert("ns/users", [ent("b", email="b@x"), ent("a"), ent("p1", "project")])
    listed = await catalog.sink.list_entities()
    assert [(e["blueprint"], e["identifier"]) for e in listed] == [("project", "p1"), ("user", "a"), ("user", "b")]
    assert listed[2]["properties"] == {"email": "b@x"}
    assert [e["identifier"] for e in await catalog.sink.list_entities("user")] == ["a", "b"]
    refs = [EntityRef("project", "p1"), EntityRef("user", "a"), EntityRef("user", "b")]
    await catalog.sink.delete("ns/other", refs)  # not the owner: nothing goes
    assert await catalog.sink.count() == 3
    await catalog.sink.delete("ns/users", refs[:2])
    assert [e["identifier"] for e in await catalog.sink.list_entities()] == ["b"]


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
    await catalog.sink.delete("second", [EntityRef("user", "b")])  # its owner now
    assert await catalog.sink.count() == 0


async def test_sync_completed_changes_nothing(catalog: Catalog) -> None:
    await catalog.sink.upsert("o", [ent("a")], sync_id="s1")
    await catalog.sink.sync_completed("o", "s1", entities=1, full=True)
    assert [e["identifier"] for e in await catalog.sink.list_entities()] == ["a"]


async def test_duplicates_within_a_batch_first_one_wins(catalog: Catalog) -> None:
    assert await catalog_sync(catalog, "o", [ent("a", v=1), ent("a", v=2)]) == (1, 0)
    assert (await catalog.sink.list_entities())[0]["properties"] == {"v": 1}


async def test_entities_and_state_survive_a_restart_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with await Catalog.open(path) as c:
        await catalog_sync(c, "o", [ent("a"), ent("b")])
    async with await Catalog.open(path) as c:
        state = await c.state.open("o")
        assert await state.known_count() == 2
        to_push, unchanged = await state.diff([ent("a")])
        assert (to_push, unchanged) == ([], 1)
        assert await stale_of(state) == [EntityRef("user", "b")]
        await state.close()
        assert [e["identifier"] for e in await c.sink.list_entities()] == ["a", "b"]


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
