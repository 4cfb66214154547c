"""One SQLite connection, used from one dedicated thread, behind an async interface.

sqlite3 calls block; every call runs in the connection's own worker thread, one at a time, so the
event loop never waits on the disk and the connection is never shared across threads. Each call
is a plain function of the connection, and the writers wrap their work in :func:`transaction`
(one transaction per batch). Long listings go a page at a time (:meth:`SqliteDB.keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
PAGE = 1000  # rows per query when listing
CACHE_KIB = 64 * 1024  # page cache per connection (bounded; the default 2 MiB thrashes past ~100k entities)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    blueprint  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    owner      TEXT NOT NULL,
    data       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_by_owner ON entities (owner, blueprint, identifier);

CREATE TABLE IF NOT EXISTS sync_state (
    owner      TEXT NOT NULL,
    blueprint  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    hash       BLOB NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (owner, blueprint, identifier)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sync_state_by_key ON sync_state (blueprint, identifier);

CREATE TABLE IF NOT EXISTS sync_owners (
    owner      TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sync_leases (
    owner      TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    since      REAL NOT NULL,
    expires    REAL NOT NULL
) WITHOUT ROWID;
"""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteDB:
    """An SQLite database file (or ``:memory:``) with the catalog and state tables."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="httpsync-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, create: bool = True) -> SqliteDB:
        """Open (and by default create) the database. ``create=False`` raises FileNotFoundError
        when the file does not exist instead of creating an empty one."""
        db = cls(str(path))
        try:
            await db._submit(lambda: db._connect(create))
        except BaseException:
            db._executor.shutdown(wait=False)
            raise
        return db

    def _connect(self, create: bool) -> None:
        if not create and self.path != ":memory:" and not Path(self.path).is_file():
            raise FileNotFoundError(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.executescript(SCHEMA)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch (blueprint TEXT, identifier TEXT, hash BLOB)")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the connection's thread."""
        if self._closed:
            raise RuntimeError(f"the database {self.path} is closed")

        def run() -> T:
            assert self._conn is not None
            return fn(self._conn)

        return await self._submit(run)

    async def keys(
        self, table: str, where: str, args: tuple[object, ...], *, size: int = PAGE
    ) -> AsyncIterator[list[tuple[str, str]]]:
        """The (blueprint, identifier) keys of the rows of ``table`` matching ``where`` (with ``args``),
        in key order, ``size`` at a time. Each page starts after the last key of the one before
        (keyset pagination), so memory stays bounded and the caller may delete rows between pages."""
        sql = (
            f"SELECT blueprint, identifier FROM {table} WHERE {where} AND (blueprint, identifier) > (?, ?) "
            "ORDER BY blueprint, identifier LIMIT ?"
        )

        def page(conn: sqlite3.Connection, params: tuple[object, ...]) -> list[tuple[str, str]]:
            return conn.execute(sql, params).fetchall()

        after: tuple[str, str] = ("", "")
        while True:
            rows = await self.call(functools.partial(page, params=(*args, *after, size)))
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._submit(close)
        finally:
            self._executor.shutdown(wait=True)
