"""The change-detection state of any sink, in SQLite (see :class:`httpsync.engine.ports.StateStore`).

:class:`SqliteStateStore` remembers, per owner, (blueprint, identifier) -> content hash of what the
sink accepted. Its tables live in the catalog file (:class:`httpsync.sinks.catalog.Catalog`) or in a
file of their own (remote sinks). "Seen in this sync" is a generation number in the table, not a
Python set: memory stays bounded with a million entities per mapping, and each batch is diffed with
one query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from httpsync.engine.types import Entity, EntityRef
from httpsync.state.hashing import entity_hash
from httpsync.state.sqlitedb import SqliteDB, transaction


class SqliteMappingState:
    """The state of one owner during one sync (see :class:`httpsync.engine.ports.MappingState`).

    Opening it starts a new *generation*; :meth:`diff` stamps every entity it sees with it, so the
    stale entities are the rows left with an older generation."""

    def __init__(self, db: SqliteDB, owner: str, generation: int, known: int) -> None:
        self._db = db
        self.owner = owner
        self.generation = generation
        self._known = known
        self._pending: dict[tuple[str, str], bytes] = {}  # hashes of entities returned by diff, until commit
        self._duplicates: list[EntityRef] = []

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        """See :meth:`httpsync.engine.ports.MappingState.diff`. An entity already seen in this sync
        (earlier in the batch, or in an earlier batch) is a duplicate: the first one wins, the others
        are neither pushed nor counted, and :meth:`take_duplicates` names them."""
        owner, generation = self.owner, self.generation
        pending = self._pending
        first: dict[tuple[str, str], Entity] = {}
        duplicates = self._duplicates
        for e in entities:
            key = (e["blueprint"], e["identifier"])
            if key in first or key in pending:
                duplicates.append(EntityRef(*key))
            else:
                first[key] = e

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[str, str, bytes, Entity]], int, list[tuple[str, str]]]:
            rows = [(b, i, entity_hash(e)) for (b, i), e in first.items()]
            with transaction(conn):
                conn.execute("DELETE FROM temp.batch")
                conn.executemany("INSERT INTO temp.batch VALUES (?, ?, ?)", rows)
                # Seen in an earlier batch of this sync (stamped with its generation): duplicates.
                seen = conn.execute(
                    "SELECT b.blueprint, b.identifier FROM temp.batch b JOIN sync_state s "
                    "ON s.owner = ? AND s.blueprint = b.blueprint AND s.identifier = b.identifier "
                    "AND s.generation = ?",
                    (owner, generation),
                ).fetchall()
                if seen:
                    conn.executemany("DELETE FROM temp.batch WHERE blueprint = ? AND identifier = ?", seen)
                unchanged = set(
                    conn.execute(
                        "SELECT b.blueprint, b.identifier FROM temp.batch b JOIN sync_state s "
                        "ON s.owner = ? AND s.blueprint = b.blueprint AND s.identifier = b.identifier "
                        "AND s.hash = b.hash",
                        (owner,),
                    ).fetchall()
                )
                conn.execute(
                    "UPDATE sync_state SET generation = ? WHERE owner = ? AND (blueprint, identifier) IN "
                    "(SELECT blueprint, identifier FROM temp.batch)",
                    (generation, owner),
                )
            again = set(seen)
            changed = [(b, i, h, first[(b, i)]) for b, i, h in rows if (b, i) not in unchanged and (b, i) not in again]
            return changed, len(unchanged), seen

        changed, unchanged, seen = await self._db.call(run)
        duplicates += (EntityRef(b, i) for b, i in seen)
        for b, i, h, _ in changed:
            pending[(b, i)] = h
        return [e for _, _, _, e in changed], unchanged

    def take_duplicates(self) -> list[EntityRef]:
        duplicates, self._duplicates = self._duplicates, []
        return duplicates

    async def known_count(self) -> int:
        return self._known

    async def stale_count(self) -> int:
        row = await self._db.call(
            lambda c: c.execute(
                "SELECT count(*) FROM sync_state WHERE owner = ? AND generation < ?", (self.owner, self.generation)
            ).fetchone()
        )
        return int(row[0])

    async def stale_batches(self, size: int) -> AsyncIterator[list[EntityRef]]:
        async for keys in self._db.keys(
            "sync_state", "owner = ? AND generation < ?", (self.owner, self.generation), size=size
        ):
            yield [EntityRef(b, i) for b, i in keys]

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        owner, generation = self.owner, self.generation
        rows = []
        pending = self._pending
        for e in pushed:
            b, i = e["blueprint"], e["identifier"]
            h = pending.pop((b, i), None) or entity_hash(e)
            rows.append((owner, b, i, h, generation))
        gone = [(owner, r.blueprint, r.identifier) for r in deleted]

        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(
                    "INSERT INTO sync_state (owner, blueprint, identifier, hash, generation) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (owner, blueprint, identifier) DO UPDATE SET hash = excluded.hash, "
                    "generation = excluded.generation",
                    rows,
                )
                conn.executemany("DELETE FROM sync_state WHERE owner = ? AND blueprint = ? AND identifier = ?", gone)

        if rows or gone:
            await self._db.call(run)

    async def close(self) -> None:
        self._pending.clear()


class SqliteStateStore:
    """Per-owner change-detection state in SQLite (for any sink)."""

    def __init__(self, db: SqliteDB, *, owns_db: bool = False) -> None:
        self._db = db
        self._owns_db = owns_db

    @classmethod
    async def open_file(cls, path: str | Path) -> SqliteStateStore:
        """A store in a file of its own (closed with the store)."""
        return cls(await SqliteDB.open(path), owns_db=True)

    async def open(self, owner: str) -> SqliteMappingState:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            with transaction(conn):
                conn.execute("INSERT OR IGNORE INTO sync_owners (owner, generation) VALUES (?, 0)", (owner,))
                (generation,) = conn.execute(
                    "UPDATE sync_owners SET generation = generation + 1 WHERE owner = ? RETURNING generation", (owner,)
                ).fetchone()
                (known,) = conn.execute("SELECT count(*) FROM sync_state WHERE owner = ?", (owner,)).fetchone()
            return int(generation), int(known)

        generation, known = await self._db.call(run)
        return SqliteMappingState(self._db, owner, generation, known)

    async def owned(self, owner: str) -> AsyncIterator[EntityRef]:
        async for keys in self._db.keys("sync_state", "owner = ?", (owner,)):
            for b, i in keys:
                yield EntityRef(b, i)

    async def forget(self, owner: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM sync_state WHERE owner = ?", (owner,))
                conn.execute("DELETE FROM sync_owners WHERE owner = ?", (owner,))

        await self._db.call(run)

    async def aclose(self) -> None:
        if self._owns_db:
            await self._db.aclose()
