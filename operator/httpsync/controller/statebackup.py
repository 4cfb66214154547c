"""Restart-safe memory of a mapping: (blueprint, identifier) -> content hash of what was last pushed,
kept in ConfigMaps of the mapping's namespace (the local SQLite working copy lives on an emptyDir).

Layout, for a mapping ``m``:

- index ``httpsync-state-<m>``: ``data.index`` is JSON ``{version, mapping, uid, generation, buckets, rows,
  bucketState: [{rows, bytes, shards: [{name, sha256, bytes, resourceVersion}]}]}``.
- shards ``httpsync-state-<m>-<bucket>-<part>-g<generation>``: ``binaryData.rows`` is a zlib stream of the
  bucket's sorted ``blueprint\\tidentifier\\thash\\n`` lines (backslash, tab, newline and CR escaped).

A row belongs to bucket ``crc32(blueprint\\tidentifier) % N``; N is a power of two up to 1024, kept in the
index and chosen so the largest bucket fills about half a shard. When a bucket outgrows a shard N grows
(everything is rewritten); at 1024 buckets a bucket spans several shards. A save only writes the buckets
whose content changed (compared by sha256) or whose shards were deleted or edited since (compared by
resourceVersion), each under a new generation's name, then the index, then deletes what the index no
longer names: a crash before the index write leaves the old index and its shards intact. Rows are spilled
per bucket, compressed, to a temporary file while they stream in, so memory stays at a few shards whatever
the number of rows.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import tempfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from httpsync.api.models import GROUP, VERSION
from httpsync.controller.kube import KubeApi
from httpsync.errors import EngineError

FORMAT_VERSION = 1
MAX_BUCKETS = 1024  # power of two: N always divides it, so spilled micro-buckets regroup into any N
FILL = 0.5  # when N is (re)chosen, the largest bucket may fill this much of a shard
SHRINK = 8  # a full save shrinks N when 1/SHRINK of it would do
METADATA_ALLOWANCE = 4096  # JSON bytes of a shard ConfigMap besides its rows (metadata, managedFields)
SPILL_CHUNK = 4096  # raw bytes a micro-bucket gathers before they are compressed into the spill
SPOOL_BYTES = 4 << 20  # the spill stays in memory up to this, then goes to a temporary file
CONCURRENCY = 4  # shard reads/writes in flight
SAMPLE_ROWS = 5_000  # rows compressed together to estimate how well a bucket compresses
YIELD_EVERY = 10_000  # rows between turns given back to the event loop

STATE_OF = "httpsync.io/state-of"
STATE_PART = "httpsync.io/state-part"
MANAGED_BY = "app.kubernetes.io/managed-by"

Row = tuple[str, str, str]
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPED = re.compile(r"\\(.?)", re.S)


class StateCorruptError(EngineError):
    """The saved state cannot be trusted: the caller resyncs in full, deleting nothing, and saves anew."""

    reason = "StateCorrupt"


def _esc(s: str) -> str:
    if s.isprintable() and "\\" not in s:  # the common case, several times faster than the regex
        return s
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group()], s)


def _unesc(s: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(1)], s)  # KeyError on a malformed escape


def _key(blueprint: str, identifier: str) -> bytes:
    return f"{_esc(blueprint)}\t{_esc(identifier)}".encode()


def bucket_of(blueprint: str, identifier: str, n: int) -> int:
    """The bucket of a row when there are ``n`` buckets (stable across processes and versions)."""
    return zlib.crc32(_key(blueprint, identifier)) % n


def _dns_safe(name: str, room: int) -> str:
    """``name`` if it fits in ``room`` characters, else a prefix of it and a hash (stays a DNS subdomain)."""
    if len(name) <= room:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: room - 11].rstrip('.-_')}-{digest}"


@dataclass(frozen=True)
class SaveReport:
    generation: int  # the index's generation after the save
    buckets: int
    rows: int
    shards_written: int
    shards_deleted: int
    shards_total: int
    bytes_written: int  # compressed bytes of the shards written
    bytes_total: int  # compressed bytes of all shards
    resized_from: int | None  # the former N when N changed (every bucket rewritten)


class _Spill:
    """Rows by micro-bucket (``crc32 % MAX_BUCKETS``) as independent zlib chunks in one spooled file.
    Bucket b of N is the union of the micro-buckets m with ``m % N == b``."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        self.end = 0
        self.pending: list[list[bytes]] = [[] for _ in range(MAX_BUCKETS)]
        self.pending_bytes = [0] * MAX_BUCKETS
        self.chunks: list[list[tuple[int, int]]] = [[] for _ in range(MAX_BUCKETS)]
        self.raw = [0] * MAX_BUCKETS  # uncompressed bytes
        self.rows = [0] * MAX_BUCKETS
        self.ratio = 1.0  # compressed / raw, measured on a sample in finish()

    def add(self, row: Row) -> None:
        key = _key(row[0], row[1])
        m = zlib.crc32(key) & (MAX_BUCKETS - 1)
        line = key + b"\t" + _esc(row[2]).encode()
        self.pending[m].append(line)
        self.rows[m] += 1
        self.pending_bytes[m] += len(line) + 1
        if self.pending_bytes[m] >= SPILL_CHUNK:
            self._flush(m)

    def _flush(self, m: int) -> None:
        data = zlib.compress(b"\n".join(self.pending[m]), 1)
        self.file.write(data)
        self.chunks[m].append((self.end, len(data)))
        self.raw[m] += self.pending_bytes[m]
        self.end += len(data)
        self.pending[m], self.pending_bytes[m] = [], 0

    def finish(self) -> None:
        # The spill's small chunks compress worse than a whole bucket does, so bucket sizes are estimated
        # from raw sizes and the ratio of a bucket-sized sample: what is still pending, else early chunks.
        sample = [line for lines in self.pending for line in lines][:SAMPLE_ROWS]
        chunks = (chunk for m in range(MAX_BUCKETS) for chunk in self.chunks[m])
        while len(sample) < SAMPLE_ROWS and (chunk := next(chunks, None)):
            self.file.seek(chunk[0])
            sample.extend(zlib.decompress(self.file.read(chunk[1])).split(b"\n"))
        if sample:
            data = b"\n".join(sample) + b"\n"
            self.ratio = len(zlib.compress(data, 6)) / len(data)
        self.file.seek(self.end)
        for m in range(MAX_BUCKETS):
            if self.pending[m]:
                self._flush(m)

    def size(self, bucket: int, n: int) -> int:
        """Estimated compressed size of a bucket."""
        return int(sum(self.raw[bucket::n]) * self.ratio)

    def count(self, bucket: int, n: int) -> int:
        return sum(self.rows[bucket::n])

    def largest(self, n: int) -> int:
        return max(self.size(b, n) for b in range(n))

    def read(self, bucket: int, n: int) -> list[bytes]:
        out = []
        for m in range(bucket, MAX_BUCKETS, n):
            for offset, length in self.chunks[m]:
                self.file.seek(offset)
                out.append(self.file.read(length))
        return out

    def close(self) -> None:
        self.file.close()


def _build_parts(chunks: list[bytes], limit: int) -> list[bytes]:
    """A bucket's spilled chunks as sorted lines, compressed into as few parts of at most ``limit`` bytes."""
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(zlib.decompress(chunk).split(b"\n"))
    if not lines:
        return []
    lines.sort()
    k = 1
    while True:
        size = -(-len(lines) // k)
        parts = [zlib.compress(b"\n".join(lines[i : i + size]) + b"\n", 6) for i in range(0, len(lines), size)]
        biggest = max(len(p) for p in parts)
        if biggest <= limit:
            return parts
        if size == 1:
            raise EngineError(f"a single state row compresses to {biggest} bytes, over the shard limit of {limit}")
        k = max(k + 1, int(k * biggest / (limit * 0.9)) + 1)


class ConfigMapStateBackup:
    """The durable copy of one HttpEndpointMapping's sync state (see the module docstring)."""

    bucket_of = staticmethod(bucket_of)

    def __init__(
        self, api: KubeApi, namespace: str, mapping_name: str, mapping_uid: str, *, shard_bytes: int = 900_000
    ) -> None:
        if shard_bytes < 4 * METADATA_ALLOWANCE:
            raise ValueError(f"shard_bytes must be at least {4 * METADATA_ALLOWANCE}")
        self.api = api
        self.namespace = namespace
        self.mapping_name = mapping_name
        self.mapping_uid = mapping_uid
        self.shard_bytes = shard_bytes
        self.part_limit = (shard_bytes - METADATA_ALLOWANCE) * 3 // 4  # binaryData is base64 in JSON
        self.index_name = _dns_safe(f"httpsync-state-{mapping_name}", 253 - 24)  # room for -bbbb-ppp-g<gen>
        self.label = _dns_safe(mapping_name, 63)
        self._seen_buckets: int | None = None

    # -- reading

    async def buckets(self) -> int:
        """N of the saved state (1 when there is none yet); bucket changes with :func:`bucket_of` and this N."""
        index = await self._read_index_or_none()
        self._seen_buckets = index["buckets"] if index else 1
        return self._seen_buckets

    async def exists(self) -> bool:
        return await self.api.get_config_map(self.namespace, self.index_name) is not None

    async def load(self) -> AsyncIterator[Row]:
        """Every saved row, bucket by bucket (nothing when no state was saved yet).
        Raises :class:`StateCorruptError` when the index or a shard is missing, altered or unreadable."""
        cm = await self.api.get_config_map(self.namespace, self.index_name)
        if cm is None:
            return
        index = self._parse_index(cm)
        if index["uid"] != self.mapping_uid:
            raise self._corrupt(
                f"it was saved for an earlier HttpEndpointMapping of the same name (uid {index['uid']})"
            )
        self._seen_buckets = index["buckets"]
        shards = [(b, s) for b, entry in enumerate(index["bucketState"]) for s in entry["shards"]]
        counts = [0] * index["buckets"]
        ahead: asyncio.Task[str] | None = None
        try:
            for i, (bucket, shard) in enumerate(shards):
                current = ahead or asyncio.create_task(self._fetch_shard(shard))
                ahead = asyncio.create_task(self._fetch_shard(shards[i + 1][1])) if i + 1 < len(shards) else None
                text = await current
                for row in self._parse_rows(shard["name"], text):
                    counts[bucket] += 1
                    yield row
        finally:
            if ahead is not None:  # the consumer stopped early or a shard failed: drop the one fetched ahead
                ahead.cancel()
                ahead.add_done_callback(lambda t: t.cancelled() or t.exception())
        for bucket, entry in enumerate(index["bucketState"]):
            if counts[bucket] != entry["rows"]:
                raise self._corrupt(f"bucket {bucket} holds {counts[bucket]} rows, its index says {entry['rows']}")

    async def _fetch_shard(self, shard: dict[str, Any]) -> str:
        name = shard["name"]
        cm = await self.api.get_config_map(self.namespace, name)
        if cm is None:
            raise self._corrupt(f"ConfigMap {name}, listed in its index, does not exist")
        try:
            payload = base64.b64decode((cm.get("binaryData") or {})["rows"], validate=True)
        except (KeyError, ValueError):
            raise self._corrupt(f"ConfigMap {name} has no readable binaryData.rows") from None
        if hashlib.sha256(payload).hexdigest() != shard["sha256"]:
            raise self._corrupt(f"ConfigMap {name} does not match the checksum in its index")
        try:
            return zlib.decompress(payload).decode()
        except (zlib.error, UnicodeDecodeError) as e:
            raise self._corrupt(f"ConfigMap {name} does not decompress ({e})") from None

    def _parse_rows(self, name: str, text: str) -> Iterable[Row]:
        lines = text.split("\n")
        if lines.pop() != "":
            raise self._corrupt(f"ConfigMap {name} does not end with a newline")
        for line in lines:
            fields = line.split("\t")
            if len(fields) != 3:
                raise self._corrupt(f"ConfigMap {name} has a line without 3 tab-separated fields")
            if "\\" in line:
                try:
                    fields = [_unesc(f) for f in fields]
                except KeyError:
                    raise self._corrupt(f"ConfigMap {name} has a malformed escape") from None
            yield fields[0], fields[1], fields[2]

    # -- writing

    async def save(
        self, rows: AsyncIterable[Row] | Iterable[Row], *, changed_buckets: set[int] | None = None
    ) -> SaveReport:
        """Save the full state ``rows`` (each (blueprint, identifier, hash) once, any order).

        With ``changed_buckets`` (numbers from :func:`bucket_of` with N from :meth:`buckets`), only those
        buckets, and any whose row count no longer matches, are rebuilt; the others keep their shards.
        Either way a shard is only written when its content changed, and nothing at all when none did.
        """
        old_cm, old, generation = await self._previous()
        listed = await self.api.list_config_map_metadata(self.namespace, self._selector)
        present = {m["name"]: m.get("resourceVersion") for m in listed}
        spill = _Spill()
        try:
            await self._fill(spill, rows)
            n = self._choose_buckets(spill, old["buckets"] if old else None, may_shrink=changed_buckets is None)
            same_layout = old is not None and n == old["buckets"]
            state: list[Any] = [dict(e) for e in old["bucketState"]] if old and same_layout else [None] * n
            todo = set(range(n))
            if same_layout and changed_buckets is not None and self._seen_buckets in (None, n):
                todo = {b for b in changed_buckets if 0 <= b < n}
                todo |= {b for b in range(n) if spill.count(b, n) != state[b]["rows"]}
            for b, entry in enumerate(state):  # a shard deleted or edited since it was written: rebuild
                if entry and any(present.get(s["name"]) != s.get("resourceVersion") for s in entry["shards"]):
                    state[b] = None
                    todo.add(b)
            changed, written = await self._write_buckets(spill, n, sorted(todo), generation, state)
        finally:
            spill.close()
        if changed or not same_layout:
            index = {
                "version": FORMAT_VERSION,
                "mapping": self.mapping_name,
                "uid": self.mapping_uid,
                "generation": generation,
                "buckets": n,
                "rows": sum(e["rows"] for e in state),
                "bucketState": state,
            }
            await self._write_index(index, old_cm)
        else:
            generation -= 1
        shards = [s for entry in state for s in entry["shards"]]
        keep = {s["name"] for s in shards} | {self.index_name}
        deleted = await self._delete([name for name in present if name not in keep])  # also crash leftovers
        self._seen_buckets = n
        return SaveReport(
            generation=generation,
            buckets=n,
            rows=sum(e["rows"] for e in state),
            shards_written=len(written),
            shards_deleted=deleted,
            shards_total=len(shards),
            bytes_written=sum(written),
            bytes_total=sum(s["bytes"] for s in shards),
            resized_from=old["buckets"] if old and not same_layout else None,
        )

    async def _previous(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None, int]:
        """The index ConfigMap, its usable content, and the generation a save writes."""
        cm = await self.api.get_config_map(self.namespace, self.index_name)
        if cm is None:
            return None, None, 1
        self._check_ours(cm)
        try:
            index = self._parse_index(cm)
        except StateCorruptError:
            return cm, None, 1  # rewritten in full
        if index["uid"] != self.mapping_uid:  # saved for an earlier mapping of the same name
            return cm, None, index["generation"] + 1
        return cm, index, index["generation"] + 1

    async def _fill(self, spill: _Spill, rows: AsyncIterable[Row] | Iterable[Row]) -> None:
        i = 0
        if isinstance(rows, AsyncIterable):
            async for row in rows:
                spill.add(row)
                i += 1
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        else:
            for row in rows:
                spill.add(row)
                i += 1
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        spill.finish()

    def _choose_buckets(self, spill: _Spill, current: int | None, *, may_shrink: bool) -> int:
        ideal = 1
        while ideal < MAX_BUCKETS and spill.largest(ideal) > self.part_limit * FILL:
            ideal *= 2
        if current is None or spill.largest(current) > self.part_limit:
            return max(ideal, current or 1)
        if may_shrink and ideal * SHRINK <= current:
            return ideal
        return current

    async def _write_buckets(
        self, spill: _Spill, n: int, buckets: list[int], generation: int, state: list[Any]
    ) -> tuple[int, list[int]]:
        """Rebuild ``buckets`` into ``state`` and write the shards of those whose content changed.
        Returns how many buckets changed and the sizes of the shards written."""
        changed = [0]
        written: list[int] = []

        async def one(bucket: int) -> None:
            parts = await asyncio.to_thread(_build_parts, spill.read(bucket, n), self.part_limit)
            sums = [hashlib.sha256(p).hexdigest() for p in parts]
            if state[bucket] is not None and [s["sha256"] for s in state[bucket]["shards"]] == sums:
                return
            changed[0] += 1
            shards = []
            for part, (payload, digest) in enumerate(zip(parts, sums, strict=True)):
                name = f"{self.index_name}-{bucket}-{part}-g{generation}"
                version = await self._put(self._config_map(name, "shard", binary={"rows": payload}))
                shards.append({"name": name, "sha256": digest, "bytes": len(payload), "resourceVersion": version})
                written.append(len(payload))
            state[bucket] = {"rows": spill.count(bucket, n), "bytes": sum(len(p) for p in parts), "shards": shards}

        await _bounded(buckets, one)
        return changed[0], written

    async def _write_index(self, index: dict[str, Any], old: dict[str, Any] | None) -> None:
        text = json.dumps(index, separators=(",", ":"))
        if len(text) > self.shard_bytes - METADATA_ALLOWANCE:
            raise EngineError(f"the state index of {self._what} would be {len(text)} bytes, too large for a ConfigMap")
        body = self._config_map(self.index_name, "index", data={"index": text})
        if old is None:
            await self.api.create_config_map(self.namespace, body)
        else:
            body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            await self.api.replace_config_map(self.namespace, body)  # 409 if another writer got there first

    async def _put(self, body: dict[str, Any]) -> str:
        """Create a shard (one left by a save that crashed before its index write is replaced); its resourceVersion."""
        try:
            created = await self.api.create_config_map(self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = await self.api.get_config_map(self.namespace, body["metadata"]["name"])
            if existing is None:
                created = await self.api.create_config_map(self.namespace, body)
            else:
                self._check_ours(existing)
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                created = await self.api.replace_config_map(self.namespace, body)
        return str(created["metadata"]["resourceVersion"])

    async def _delete(self, names: list[str]) -> int:
        deleted = [0]

        async def one(name: str) -> None:
            gone = await self.api.delete_config_map(self.namespace, name)
            deleted[0] += gone  # not `+= await`: that reads the total before awaiting

        await _bounded(names, one)
        return deleted[0]

    async def delete_all(self) -> int:
        """Delete every state ConfigMap of this mapping (the index first); returns how many were deleted."""
        names = [m["name"] for m in await self.api.list_config_map_metadata(self.namespace, self._selector)]
        first = await self._delete([n for n in names if n == self.index_name])
        return first + await self._delete([n for n in names if n != self.index_name])

    # -- helpers

    @property
    def _selector(self) -> str:
        return f"{STATE_OF}={self.label}"

    @property
    def _what(self) -> str:
        return f"HttpEndpointMapping {self.namespace}/{self.mapping_name}"

    def _config_map(
        self, name: str, part: str, *, data: dict[str, str] | None = None, binary: dict[str, bytes] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {STATE_OF: self.label, STATE_PART: part, MANAGED_BY: "httpsync"},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "HttpEndpointMapping",
                        "name": self.mapping_name,
                        "uid": self.mapping_uid,
                    }
                ],
            },
        }
        if data is not None:
            body["data"] = data
        if binary is not None:
            body["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
        return body

    def _check_ours(self, cm: dict[str, Any]) -> None:
        labels = (cm.get("metadata") or {}).get("labels") or {}
        if labels.get(STATE_OF) != self.label:
            name = cm["metadata"]["name"]
            raise EngineError(
                f"ConfigMap {self.namespace}/{name} exists but is not the sync state of {self._what} "
                f"(label {STATE_OF}={labels.get(STATE_OF)!r}); rename or delete it",
                reason="StateNameConflict",
                stalled=True,
            )

    def _corrupt(self, detail: str) -> StateCorruptError:
        return StateCorruptError(
            f"the saved sync state of {self._what} is unusable: {detail}. The operator resyncs in full, deleting "
            f"nothing this time, and saves the state anew. If this repeats, delete the state with "
            f"`kubectl delete configmap -n {self.namespace} -l {self._selector}` and find what alters it."
        )

    async def _read_index_or_none(self) -> dict[str, Any] | None:
        cm = await self.api.get_config_map(self.namespace, self.index_name)
        if cm is None:
            return None
        try:
            return self._parse_index(cm)
        except StateCorruptError:
            return None

    def _parse_index(self, cm: dict[str, Any]) -> dict[str, Any]:
        labels = (cm.get("metadata") or {}).get("labels") or {}
        if labels.get(STATE_OF) != self.label:
            raise self._corrupt(f"ConfigMap {self.index_name} is not labelled {self._selector}")
        try:
            index = json.loads((cm.get("data") or {})["index"])
            n = index["buckets"]
            state = index["bucketState"]
            valid = (
                index["version"] == FORMAT_VERSION
                and isinstance(index["generation"], int)
                and isinstance(index["uid"], str)
                and isinstance(n, int)
                and 0 < n <= MAX_BUCKETS
                and n & (n - 1) == 0
                and isinstance(state, list)
                and len(state) == n
                and all(
                    isinstance(e["rows"], int)
                    and all(isinstance(s["name"], str) and isinstance(s["sha256"], str) for s in e["shards"])
                    for e in state
                )
            )
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise self._corrupt(f"ConfigMap {self.index_name} does not hold a version-{FORMAT_VERSION} index")
        return index


async def _bounded(items: Iterable[Any], fn: Callable[[Any], Awaitable[None]]) -> None:
    """``fn`` over ``items``, CONCURRENCY at a time; the first failure cancels the rest and is raised."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await fn(item)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(CONCURRENCY):
                tg.create_task(worker())
    except ExceptionGroup as group:
        raise group.exceptions[0] from None
