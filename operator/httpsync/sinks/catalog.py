"""The embedded catalog: entities in an SQLite file, and the change-detection state of any sink.

- :class:`CatalogSink` stores entities keyed by (blueprint, identifier); each row remembers the
  mapping that wrote it last (its *owner*), and a delete only removes rows the owner still owns.
- :class:`SqliteStateStore` remembers, per owner, identifier -> content hash of what the sink
  accepted. It works with any sink (its tables can live in the catalog file or a file of their own).
  "Seen in this sync" is a generation number in the table, not a Python set: memory stays bounded
  with a million entities per mapping, and each page is diffed with one query.
- :class:`Catalog` opens both over one connection to one file.

The file is ``--catalog``, else ``$HTTPSYNC_CATALOG``, else ``./httpsync-catalog.db``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from httpsync.engine import jsoncodec
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SinkError
from httpsync.sinks.base import SinkReport
from httpsync.state.sqlitedb import SqliteDB, transaction

DEFAULT_CATALOG = "httpsync-catalog.db"
CATALOG_ENV = "HTTPSYNC_CATALOG"
PAGE = 1000  # rows per query when iterating


def default_catalog_path(explicit: str | None = None) -> str:
    """``explicit`` (``--catalog``), else ``$HTTPSYNC_CATALOG``, else ``./httpsync-catalog.db``."""
    return explicit or os.environ.get(CATALOG_ENV) or os.path.join(".", DEFAULT_CATALOG)


def canonical_json(entity: Entity) -> str:
    """The canonical JSON the content hash is taken of (see :func:`jsoncodec.canonical`)."""
    return jsoncodec.canonical(entity).decode()


def entity_hash(entity: Entity) -> bytes:
    """Content hash of an entity: blake2b-128 of its canonical JSON (:func:`jsoncodec.canonical`:
    orjson with sorted keys, compact, UTF-8; the stdlib's ``sort_keys`` ASCII form for what orjson
    refuses). Changing this form changes every hash: the first sync after such a change pushes
    every entity once."""
    return hashlib.blake2b(jsoncodec.canonical(entity), digest_size=16).digest()


async def _aiter(items: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _sqlite_failure(action: str, e: sqlite3.Error, path: str) -> SinkError:
    return SinkError(f"catalog {path}: {action} failed: {e}")


# --------------------------------------------------------------------------- the sink


class CatalogSink:
    """Entities in the embedded SQLite catalog."""

    name = "catalog"

    def __init__(self, db: SqliteDB, *, owns_db: bool = False) -> None:
        self._db = db
        self._owns_db = owns_db

    @classmethod
    async def open(cls, path: str | Path) -> CatalogSink:
        return cls(await SqliteDB.open(path), owns_db=True)

    async def upsert(self, owner: str, entities: Sequence[Entity]) -> SinkReport:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        encode = jsoncodec.compact
        rows = [(e["blueprint"], e["identifier"], owner, encode(e), now) for e in entities]

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(
                    "INSERT INTO entities (blueprint, identifier, owner, data, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (blueprint, identifier) DO UPDATE SET "
                    "owner = excluded.owner, data = excluded.data, updated_at = excluded.updated_at",
                    rows,
                )

        try:
            await self._db.call(write)
        except sqlite3.Error as e:
            raise _sqlite_failure("writing entities", e, self._db.path) from None
        return SinkReport()

    async def delete(self, owner: str, refs: Sequence[EntityRef]) -> SinkReport:
        rows = [(r.blueprint, r.identifier, owner) for r in refs]

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany("DELETE FROM entities WHERE blueprint = ? AND identifier = ? AND owner = ?", rows)

        try:
            await self._db.call(write)
        except sqlite3.Error as e:
            raise _sqlite_failure("deleting entities", e, self._db.path) from None
        return SinkReport()

    async def list_owned(self, owner: str) -> AsyncIterator[EntityRef]:
        """Every entity this owner wrote last, in (blueprint, identifier) order, a page at a time."""
        after = ("", "")
        while True:
            rows = await self._db.call(
                lambda conn, a=after: conn.execute(
                    "SELECT blueprint, identifier FROM entities WHERE owner = ? AND (blueprint, identifier) > (?, ?) "
                    "ORDER BY blueprint, identifier LIMIT ?",
                    (owner, a[0], a[1], PAGE),
                ).fetchall()
            )
            for row in rows:
                yield EntityRef(row[0], row[1])
            if len(rows) < PAGE:
                return
            after = rows[-1]

    async def list_entities(self, blueprint: str | None = None) -> list[dict[str, Any]]:
        """Every entity (of ``blueprint``), ordered by (blueprint, identifier)."""
        sql = "SELECT data FROM entities"
        args: tuple[Any, ...] = ()
        if blueprint is not None:
            sql += " WHERE blueprint = ?"
            args = (blueprint,)
        sql += " ORDER BY blueprint, identifier"
        rows = await self._db.call(lambda conn: conn.execute(sql, args).fetchall())
        return [json.loads(r[0]) for r in rows]

    async def count(self, owner: str | None = None) -> int:
        sql, args = "SELECT count(*) FROM entities", ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        row = await self._db.call(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

    async def aclose(self) -> None:
        if self._owns_db:
            await self._db.aclose()


# --------------------------------------------------------------------------- the state store


class SqliteMappingState:
    """The state of one owner during one sync (see :class:`httpsync.sinks.base.MappingState`).

    Opening it starts a new *generation*; :meth:`diff` stamps every entity it sees with it, so the
    stale entities are the rows left with an older generation."""

    def __init__(self, db: SqliteDB, owner: str, generation: int, known: int) -> None:
        self._db = db
        self.owner = owner
        self.generation = generation
        self._known = known
        self._pending: dict[tuple[str, str], bytes] = {}  # hashes of entities returned by diff, until commit

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        owner, generation = self.owner, self.generation

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[str, str, bytes, Entity]], int]:
            latest: dict[tuple[str, str], Entity] = {}
            for e in entities:  # a duplicate within the batch: the last one wins
                latest[(e["blueprint"], e["identifier"])] = e
            rows = [(b, i, entity_hash(e)) for (b, i), e in latest.items()]
            with transaction(conn):
                conn.execute("DELETE FROM temp.batch")
                conn.executemany("INSERT INTO temp.batch VALUES (?, ?, ?)", rows)
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
            changed = [(b, i, h, latest[(b, i)]) for b, i, h in rows if (b, i) not in unchanged]
            return changed, len(unchanged)

        changed, unchanged = await self._db.call(run)
        pending = self._pending
        for b, i, h, _ in changed:
            pending[(b, i)] = h
        return [e for _, _, _, e in changed], unchanged

    async def known_count(self) -> int:
        return self._known

    async def stale_count(self) -> int:
        """How many entities owned before this sync were not seen in it (without listing them)."""
        row = await self._db.call(
            lambda c: c.execute(
                "SELECT count(*) FROM sync_state WHERE owner = ? AND generation < ?", (self.owner, self.generation)
            ).fetchone()
        )
        return int(row[0])

    async def stale_batches(self, size: int = PAGE) -> AsyncIterator[list[EntityRef]]:
        """The stale entities, ``size`` at a time (bounded memory; safe to commit deletions between batches)."""
        after = ("", "")
        while True:
            rows = await self._db.call(
                lambda c, a=after: c.execute(
                    "SELECT blueprint, identifier FROM sync_state WHERE owner = ? AND generation < ? "
                    "AND (blueprint, identifier) > (?, ?) ORDER BY blueprint, identifier LIMIT ?",
                    (self.owner, self.generation, a[0], a[1], size),
                ).fetchall()
            )
            if rows:
                yield [EntityRef(b, i) for b, i in rows]
            if len(rows) < size:
                return
            after = rows[-1]

    async def stale(self) -> list[EntityRef]:
        refs: list[EntityRef] = []
        async for batch in self.stale_batches():
            refs.extend(batch)
        return refs

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

    async def forget(self, owner: str) -> list[EntityRef]:
        def run(conn: sqlite3.Connection) -> list[EntityRef]:
            with transaction(conn):
                refs = [
                    EntityRef(b, i)
                    for b, i in conn.execute(
                        "SELECT blueprint, identifier FROM sync_state WHERE owner = ? ORDER BY blueprint, identifier",
                        (owner,),
                    )
                ]
                conn.execute("DELETE FROM sync_state WHERE owner = ?", (owner,))
                conn.execute("DELETE FROM sync_owners WHERE owner = ?", (owner,))
            return refs

        return await self._db.call(run)

    # -- export / import (for a backup of the state elsewhere, e.g. in the cluster)

    async def export_rows(self, owner: str) -> AsyncIterator[tuple[str, str, str]]:
        """(blueprint, identifier, hash as hex) of every entity the owner has, ordered, a page at a time."""
        after = ("", "")
        while True:
            rows = await self._db.call(
                lambda c, a=after: c.execute(
                    "SELECT blueprint, identifier, hash FROM sync_state WHERE owner = ? "
                    "AND (blueprint, identifier) > (?, ?) ORDER BY blueprint, identifier LIMIT ?",
                    (owner, a[0], a[1], PAGE),
                ).fetchall()
            )
            for b, i, h in rows:
                yield b, i, h.hex()
            if len(rows) < PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    async def import_rows(
        self, owner: str, rows: AsyncIterable[tuple[str, str, str]] | Iterable[tuple[str, str, str]]
    ) -> int:
        """Replace the owner's state with ``rows`` ((blueprint, identifier, hash as hex)), atomically:
        rows are staged a page at a time, then swapped in one transaction. Returns the row count."""
        staged = 0

        def stage(conn: sqlite3.Connection, batch: list[tuple[str, str, bytes]], first: bool) -> None:
            with transaction(conn):
                if first:
                    conn.execute("DELETE FROM temp.staged WHERE owner = ?", (owner,))
                conn.executemany("INSERT OR REPLACE INTO temp.staged VALUES (?, ?, ?, ?)", [(owner, *r) for r in batch])

        def swap(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM sync_state WHERE owner = ?", (owner,))
                conn.execute(
                    "INSERT INTO sync_state (owner, blueprint, identifier, hash, generation) "
                    "SELECT owner, blueprint, identifier, hash, 0 FROM temp.staged WHERE owner = ?",
                    (owner,),
                )
                conn.execute("DELETE FROM temp.staged WHERE owner = ?", (owner,))
                conn.execute("INSERT OR IGNORE INTO sync_owners (owner, generation) VALUES (?, 0)", (owner,))

        batch: list[tuple[str, str, bytes]] = []
        first = True

        async def flush() -> None:
            nonlocal batch, first
            await self._db.call(lambda c, b=batch, f=first: stage(c, b, f))
            batch, first = [], False

        async for b, i, h in _aiter(rows):
            batch.append((b, i, bytes.fromhex(h)))
            staged += 1
            if len(batch) >= PAGE:
                await flush()
        await flush()
        await self._db.call(swap)
        return staged

    async def owners(self) -> list[str]:
        rows = await self._db.call(lambda c: c.execute("SELECT owner FROM sync_owners ORDER BY owner").fetchall())
        return [r[0] for r in rows]

    async def aclose(self) -> None:
        if self._owns_db:
            await self._db.aclose()


# --------------------------------------------------------------------------- both, one file


class Catalog:
    """The catalog file: :attr:`sink` and :attr:`state` over one connection."""

    def __init__(self, db: SqliteDB) -> None:
        self.db = db
        self.path = db.path
        self.sink = CatalogSink(db)
        self.state = SqliteStateStore(db)

    @classmethod
    async def open(cls, path: str | Path, *, create: bool = True) -> Catalog:
        return cls(await SqliteDB.open(path, create=create))

    async def aclose(self) -> None:
        await self.db.aclose()

    async def __aenter__(self) -> Catalog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
