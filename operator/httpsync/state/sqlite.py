"""The change-detection state of any sink, in SQLite (see :class:`httpsync.engine.ports.StateStore`).

:class:`SqliteStateStore` remembers, per owner, (blueprint, identifier) -> content hash of what the
sink accepted. Its tables live in the catalog file (:class:`httpsync.sinks.catalog.Catalog`) or in a
file of their own (remote sinks). "Seen in this sync" is a generation number in the table, not a
Python set: memory stays bounded with a million entities per mapping, and each batch is diffed with
one query.

A sync holds an exclusive *lease* on its owner's state (a row of ``sync_leases``), taken by
:meth:`SqliteStateStore.open` and dropped by :meth:`SqliteMappingState.close`: two syncs of one mapping
(two ``httpsync sync`` on one catalog, the CLI and the operator on one state file, or two runs in one
process) never interleave, since interleaved generations delete the other sync's live entities. A
second sync waits up to ``wait_seconds`` for the lease, then fails with ``SyncInProgress``. The
holder renews its lease every ``lease_seconds / 4`` while it runs; a crashed holder's lease expires
``lease_seconds`` after its last renewal, at once when the holder was a process of this host that is
gone (a killed ``httpsync sync``, a restarted operator container). Every write of the state checks
the lease first: a sync that lost it (suspended longer than the lease) fails instead of writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from httpsync.engine.types import Entity, EntityRef
from httpsync.errors import SyncInProgressError
from httpsync.state.hashing import entity_hash
from httpsync.state.sqlitedb import SqliteDB, transaction

LEASE_SECONDS = 60.0
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.1


_PROCESS = uuid.uuid4().hex[:8]  # this process, among those that had its pid


def _holder() -> str:
    """Who holds a lease: host, pid, process nonce and sync nonce (host:pid for messages)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_PROCESS}:{uuid.uuid4().hex[:8]}"


def _holder_gone(holder: str) -> bool:
    """Whether the holder was a process of this host that is gone (killed, crashed): its lease need
    not run out. A pid of this host that runs, or another host, is taken as alive."""
    host, _, rest = holder.partition(":")
    pid_text, _, rest = rest.partition(":")
    process = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return process != _PROCESS  # this pid, another process: a restarted container (pid 1) or reuse
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _execute(sql: str, args: tuple[object, ...], conn: sqlite3.Connection) -> int:
    return conn.execute(sql, args).rowcount


def _check_lease(conn: sqlite3.Connection, owner: str, holder: str) -> None:
    row = conn.execute("SELECT 1 FROM sync_leases WHERE owner = ? AND holder = ?", (owner, holder)).fetchone()
    if row is None:
        raise SyncInProgressError(
            f"the sync of {owner} lost its lease on the state (it was paused longer than the lease, and "
            "another sync took it over): it stopped writing; the next sync starts over"
        )


class SqliteMappingState:
    """The state of one owner during one sync (see :class:`httpsync.engine.ports.MappingState`).

    Opening it starts a new *generation*; :meth:`diff` stamps every entity it sees with it, so the
    stale entities are the rows left with an older generation."""

    def __init__(
        self,
        db: SqliteDB,
        owner: str,
        generation: int,
        known: int,
        *,
        holder: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._db = db
        self.owner = owner
        self.generation = generation
        self._known = known
        self.holder = holder or _holder()
        self._lease_seconds = lease_seconds
        self._heartbeat: asyncio.Task[None] | None = None
        if holder is not None:
            self._heartbeat = asyncio.create_task(self._renew_lease(), name="httpsync-state-lease")
        self._pending: dict[tuple[str, str], bytes] = {}  # hashes of entities returned by diff, until commit
        self._duplicates: list[EntityRef] = []
        self._conflicts: list[tuple[EntityRef, str]] = []

    async def diff(self, entities: Sequence[Entity]) -> tuple[list[Entity], int]:
        """See :meth:`httpsync.engine.ports.MappingState.diff`. An entity already seen in this sync
        (earlier in the batch, or in an earlier batch) is a duplicate: the first one wins, the others
        are neither pushed nor counted, and :meth:`take_duplicates` names them."""
        owner, generation, holder = self.owner, self.generation, self.holder
        pending = self._pending
        first: dict[tuple[str, str], Entity] = {}
        duplicates = self._duplicates
        for e in entities:
            key = (e["blueprint"], e["identifier"])
            if key in first or key in pending:
                duplicates.append(EntityRef(*key))
            else:
                first[key] = e

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[list[tuple[str, str, bytes, Entity]], int, list[tuple[str, str]], list[tuple[str, str, str]]]:
            rows = [(b, i, entity_hash(e)) for (b, i), e in first.items()]
            with transaction(conn):
                _check_lease(conn, owner, holder)
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
                # Produced by another mapping too: an ownership conflict (named; first other owner).
                shared = conn.execute(
                    "SELECT b.blueprint, b.identifier, min(s.owner) FROM temp.batch b JOIN sync_state s "
                    "ON s.blueprint = b.blueprint AND s.identifier = b.identifier AND s.owner != ? "
                    "GROUP BY b.blueprint, b.identifier",
                    (owner,),
                ).fetchall()
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
            return changed, len(unchanged), seen, shared

        changed, unchanged, seen, shared = await self._db.call(run)
        duplicates += (EntityRef(b, i) for b, i in seen)
        self._conflicts += ((EntityRef(b, i), o) for b, i, o in shared)
        for b, i, h, _ in changed:
            pending[(b, i)] = h
        return [e for _, _, _, e in changed], unchanged

    def take_duplicates(self) -> list[EntityRef]:
        duplicates, self._duplicates = self._duplicates, []
        return duplicates

    def take_conflicts(self) -> list[tuple[EntityRef, str]]:
        conflicts, self._conflicts = self._conflicts, []
        return conflicts

    async def release_shared(self) -> int:
        """Let go of the stale entities another mapping still produces: this owner's memory of them is
        dropped (they are not stale any more, so not deleted) and the other owners' is invalidated,
        so their next sync writes the entity again as theirs. Returns how many were let go."""
        owner, generation, holder = self.owner, self.generation, self.holder

        def run(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                _check_lease(conn, owner, holder)
                conn.execute("DELETE FROM temp.batch")
                conn.execute(
                    "INSERT INTO temp.batch SELECT s.blueprint, s.identifier, x'' FROM sync_state s "
                    "WHERE s.owner = ? AND s.generation < ? AND EXISTS (SELECT 1 FROM sync_state o "
                    "WHERE o.blueprint = s.blueprint AND o.identifier = s.identifier AND o.owner != s.owner)",
                    (owner, generation),
                )
                released = conn.execute(
                    "DELETE FROM sync_state WHERE owner = ? AND (blueprint, identifier) IN "
                    "(SELECT blueprint, identifier FROM temp.batch)",
                    (owner,),
                ).rowcount
                if released:
                    conn.execute(
                        "UPDATE sync_state SET hash = x'' WHERE owner != ? AND (blueprint, identifier) IN "
                        "(SELECT blueprint, identifier FROM temp.batch)",
                        (owner,),
                    )
            return int(released)

        return await self._db.call(run)  # type: ignore[no-any-return]

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
            await self._db.call(lambda c: _check_lease(c, self.owner, self.holder))  # before the sink deletes
            yield [EntityRef(b, i) for b, i in keys]

    async def commit(self, pushed: Sequence[Entity], deleted: Sequence[EntityRef]) -> None:
        owner, generation, holder = self.owner, self.generation, self.holder
        rows = []
        pending = self._pending
        for e in pushed:
            b, i = e["blueprint"], e["identifier"]
            h = pending.pop((b, i), None) or entity_hash(e)
            rows.append((owner, b, i, h, generation))
        gone = [(owner, r.blueprint, r.identifier) for r in deleted]

        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                _check_lease(conn, owner, holder)
                conn.executemany(
                    "INSERT INTO sync_state (owner, blueprint, identifier, hash, generation) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (owner, blueprint, identifier) DO UPDATE SET hash = excluded.hash, "
                    "generation = excluded.generation",
                    rows,
                )
                conn.executemany("DELETE FROM sync_state WHERE owner = ? AND blueprint = ? AND identifier = ?", gone)

        if rows or gone:
            await self._db.call(run)

    async def _renew_lease(self) -> None:
        owner, holder = self.owner, self.holder
        while True:
            await asyncio.sleep(self._lease_seconds / 4)
            args = (time.time() + self._lease_seconds, owner, holder)
            renewed = await self._db.call(
                functools.partial(_execute, "UPDATE sync_leases SET expires = ? WHERE owner = ? AND holder = ?", args)
            )
            if not renewed:
                return  # lost: the next write says so

    async def close(self) -> None:
        """End the sync: drop the lease (another sync of the owner may start)."""
        self._pending.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat
            self._heartbeat = None
            owner, holder = self.owner, self.holder
            await self._db.call(
                lambda c: c.execute("DELETE FROM sync_leases WHERE owner = ? AND holder = ?", (owner, holder))
            )


class SqliteStateStore:
    """Per-owner change-detection state in SQLite (for any sink)."""

    def __init__(
        self,
        db: SqliteDB,
        *,
        owns_db: bool = False,
        lease_seconds: float = LEASE_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._db = db
        self._owns_db = owns_db
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds

    @classmethod
    async def open_file(cls, path: str | Path) -> SqliteStateStore:
        """A store in a file of its own (closed with the store)."""
        return cls(await SqliteDB.open(path), owns_db=True)

    async def open(self, owner: str) -> SqliteMappingState:
        """Start a sync of ``owner``: take its lease (waiting up to ``wait_seconds`` for another
        sync of it to end, else :class:`~httpsync.errors.SyncInProgressError`) and a new generation."""
        holder = _holder()
        lease = self.lease_seconds

        def run(conn: sqlite3.Connection) -> tuple[int, int] | tuple[str, float, float]:
            now = time.time()
            with transaction(conn):
                row = conn.execute(
                    "SELECT holder, since, expires FROM sync_leases WHERE owner = ?", (owner,)
                ).fetchone()
                if row is not None and row[2] > now and not _holder_gone(str(row[0])):
                    return str(row[0]), float(row[1]), float(row[2])  # held by a live sync
                conn.execute(
                    "INSERT OR REPLACE INTO sync_leases (owner, holder, since, expires) VALUES (?, ?, ?, ?)",
                    (owner, holder, now, now + lease),
                )
                conn.execute("INSERT OR IGNORE INTO sync_owners (owner, generation) VALUES (?, 0)", (owner,))
                (generation,) = conn.execute(
                    "UPDATE sync_owners SET generation = generation + 1 WHERE owner = ? RETURNING generation", (owner,)
                ).fetchone()
                (known,) = conn.execute("SELECT count(*) FROM sync_state WHERE owner = ?", (owner,)).fetchone()
            return int(generation), int(known)

        deadline = time.monotonic() + self.wait_seconds
        while True:
            got = await self._db.call(run)
            if isinstance(got[0], int):
                generation, known = got
                return SqliteMappingState(
                    self._db, owner, int(generation), int(known), holder=holder, lease_seconds=lease
                )
            if time.monotonic() >= deadline:
                other, since, expires = got
                raise SyncInProgressError(
                    f"another sync of {owner} is running on the state in {self._db.path} (held by {other} "
                    f"since {_when(since)}): this sync did not run. If that sync crashed, its lease "
                    f"expires at {_when(float(expires))} at the latest"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def owned(self, owner: str) -> AsyncIterator[EntityRef]:
        async for keys in self._db.keys("sync_state", "owner = ?", (owner,)):
            for b, i in keys:
                yield EntityRef(b, i)

    async def owned_exclusively(self, owner: str) -> AsyncIterator[EntityRef]:
        """The entities of :meth:`owned` no other mapping produces: what deleting the mapping may
        delete from the sink (the others keep theirs; :meth:`forget` has them written again)."""
        where = (
            "owner = ? AND NOT EXISTS (SELECT 1 FROM sync_state o WHERE o.blueprint = sync_state.blueprint "
            "AND o.identifier = sync_state.identifier AND o.owner != sync_state.owner)"
        )
        async for keys in self._db.keys("sync_state", where, (owner,)):
            for b, i in keys:
                yield EntityRef(b, i)

    async def forget(self, owner: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                # What other mappings produce too is written again by their next sync (as theirs).
                conn.execute(
                    "UPDATE sync_state SET hash = x'' WHERE owner != ? AND (blueprint, identifier) IN "
                    "(SELECT blueprint, identifier FROM sync_state WHERE owner = ?)",
                    (owner, owner),
                )
                conn.execute("DELETE FROM sync_state WHERE owner = ?", (owner,))
                conn.execute("DELETE FROM sync_owners WHERE owner = ?", (owner,))
                conn.execute("DELETE FROM sync_leases WHERE owner = ?", (owner,))

        await self._db.call(run)

    async def aclose(self) -> None:
        if self._owns_db:
            await self._db.aclose()
