"""The embedded catalog: entities in an SQLite file.

- :class:`CatalogSink` stores entities keyed by (blueprint, identifier); each row remembers the
  mapping that wrote it last (its *owner*), and a delete only removes rows the owner still owns.
- :class:`Catalog` opens it and a :class:`~httpsync.state.sqlite.SqliteStateStore` over one
  connection to one file: the catalog's change-detection memory lives and dies with its entities.

The file is ``--catalog``, else ``$HTTPSYNC_CATALOG``, else ``./httpsync-catalog.db``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from httpsync.engine import jsoncodec
from httpsync.engine.ports import SinkReport
from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SinkError
from httpsync.state.sqlite import SqliteStateStore
from httpsync.state.sqlitedb import SqliteDB, transaction

DEFAULT_CATALOG = "httpsync-catalog.db"
CATALOG_ENV = "HTTPSYNC_CATALOG"


def default_catalog_path(explicit: str | None = None) -> str:
    """``explicit`` (``--catalog``), else ``$HTTPSYNC_CATALOG``, else ``./httpsync-catalog.db``."""
    return explicit or os.environ.get(CATALOG_ENV) or os.path.join(".", DEFAULT_CATALOG)


def _sqlite_failure(action: str, e: sqlite3.Error, path: str) -> SinkError:
    return SinkError(f"catalog {path}: {action} failed: {e}")


# --------------------------------------------------------------------------- the sink


class CatalogSink:
    """Entities in the embedded SQLite catalog."""

    name = "catalog"

    def __init__(self, db: SqliteDB) -> None:
        self._db = db

    async def upsert(self, owner: str, entities: Sequence[Entity], *, sync_id: str | None = None) -> SinkReport:
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

    async def delete(self, owner: str, refs: Sequence[EntityRef], *, sync_id: str | None = None) -> SinkReport:
        rows = [(r.blueprint, r.identifier, owner) for r in refs]

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany("DELETE FROM entities WHERE blueprint = ? AND identifier = ? AND owner = ?", rows)

        try:
            await self._db.call(write)
        except sqlite3.Error as e:
            raise _sqlite_failure("deleting entities", e, self._db.path) from None
        return SinkReport()

    async def sync_completed(self, owner: str, sync_id: str, *, entities: int, full: bool) -> None:
        """Nothing to do: every write is already committed."""

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

    async def count(self) -> int:
        row = await self._db.call(lambda c: c.execute("SELECT count(*) FROM entities").fetchone())
        return int(row[0])

    async def aclose(self) -> None:
        """Nothing to do: the :class:`Catalog` closes the database."""


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
