"""One measurement through the real engine (SourceClient -> iter_pages -> Mapper -> diff -> sink),
against a running :mod:`bench.server`. Meant to run in a fresh process, so its peak RSS is its own.

    .venv/bin/python -m bench.e2e sync --url http://127.0.0.1:PORT --items N --sink null|catalog --db FILE
    .venv/bin/python -m bench.e2e stages --url http://127.0.0.1:PORT --items N
    .venv/bin/python -m bench.e2e fanout --url http://127.0.0.1:PORT --parents 1000 --latency 0.02
    .venv/bin/python -m bench.e2e workers --url http://127.0.0.1:PORT --items N --workers 2 [--sources 20]

Prints one JSON object on stdout. ``sync`` into ``null`` is a :class:`NullSink` with its change-detection
state in an SQLite file (how the operator runs remote sinks); into ``catalog`` it is the embedded
catalog (entities and state in one file). Run ``sync`` twice on the same ``--db`` for a re-sync.
``stages`` takes the pipeline apart on the first ``--items`` items: fetching alone (the engine's
``iter_pages``: HTTP, JSON decoding, dataPath, pagination), then fetching and mapping.
``workers`` syncs ``--sources`` sources at once (each the whole item set) into ``null`` with pages
decoded and mapped in a pool of ``--workers`` processes (0: in this process, as before the pool),
while a probe measures the event loop's worst stall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.data import CHILDREN_PER_PARENT, PAGE_SIZE, fanout_mapping, items_mapping, source_spec
from httpsync.engine.client import SourceClient
from httpsync.engine.fetch import FetchCounters, iter_pages
from httpsync.engine.mapping import Mapper
from httpsync.engine.ports import Sink, StateStore
from httpsync.engine.sync import sync_mapping
from httpsync.engine.workers import PageTask, WorkerPool
from httpsync.sinks import Catalog, NullSink
from httpsync.state.sqlite import SqliteStateStore


class NoSecrets:
    async def get(self, name: str, key: str) -> str:
        raise KeyError(f"{name}/{key}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def open_sink(kind: str, db: Path) -> tuple[Sink, StateStore, Any]:
    """The sink, its state store, and what to close afterwards."""
    if kind == "catalog":
        catalog = await Catalog.open(db)
        return catalog.sink, catalog.state, catalog
    state = await SqliteStateStore.open_file(db)
    return NullSink(), state, state


async def measure_sync(url: str, items: int, sink_kind: str, db: Path, mapping: str = "paths") -> dict[str, Any]:
    spec = source_spec(url, max_pages=items // PAGE_SIZE + 10)
    endpoint = items_mapping(mapping)
    rss_before = peak_rss_mb()
    async with await SourceClient.create(spec, NoSecrets()) as client:
        sink, state, closer = await open_sink(sink_kind, db)
        try:
            before = server_stats(url)
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            r = await sync_mapping(client, "bench", endpoint, spec.pagination, sink, state, owner="bench/items")
            seconds = time.perf_counter() - t0
            cpu = cpu_seconds() - cpu0
            after = server_stats(url)
        finally:
            await closer.aclose()
    if not r.succeeded:
        raise SystemExit(f"sync failed: {r.reason}: {r.message}")
    return {
        "sink": sink_kind,
        "mapping": mapping,
        "seconds": seconds,
        "itemsFetched": r.items_fetched,
        "itemsPerSecond": r.items_fetched / seconds,
        "requests": r.requests,
        "requestsPerSecond": r.requests / seconds,
        "entities": r.entities,
        "entitiesWritten": r.entities_upserted,
        "entitiesUnchanged": r.entities_unchanged,
        "entitiesDeleted": r.entities_deleted,
        "mappingErrors": r.mapping_error_count,
        "peakRssMb": peak_rss_mb(),
        "rssBeforeSyncMb": rss_before,
        "engineCpuSeconds": cpu,
        "serverCpuSeconds": after["cpuSeconds"] - before["cpuSeconds"],
        "serverRequests": after["requests"] - before["requests"] - 1,  # minus the first /stats
        "serverConnections": after["connections"] - before["connections"] - 1,
    }


async def measure_stages(url: str, items: int) -> dict[str, Any]:
    """Items/s of the fetch loop alone, then of fetching and mapping, over the first ``items`` items."""
    spec = source_spec(url, max_pages=items // PAGE_SIZE + 10)
    endpoint = items_mapping()
    mapper = Mapper.from_spec(endpoint)
    out: dict[str, Any] = {}
    async with await SourceClient.create(spec, NoSecrets()) as client:
        for stage in ("fetchOnly", "fetchAndMap"):
            counters = FetchCounters()
            t0 = time.perf_counter()
            async with contextlib.aclosing(iter_pages(client, endpoint, spec.pagination, counters)) as pages:
                async for page in pages:
                    if stage == "fetchAndMap":
                        mapper.map_page(page)
                    if counters.items_fetched >= items:
                        break
            seconds = time.perf_counter() - t0
            out[stage] = {
                "items": counters.items_fetched,
                "seconds": seconds,
                "itemsPerSecond": counters.items_fetched / seconds,
                "requestsPerSecond": counters.requests / seconds,
            }
    return out


async def measure_fanout(url: str, parents: int, latency: float, concurrency: int) -> dict[str, Any]:
    spec = source_spec(url, concurrency=concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        async with await SourceClient.create(spec, NoSecrets()) as client:
            sink, state, closer = await open_sink("null", Path(tmp) / "state.db")
            try:
                t0 = time.perf_counter()
                r = await sync_mapping(
                    client, "fanout", fanout_mapping(), spec.pagination, sink, state, owner="bench/fanout"
                )
                seconds = time.perf_counter() - t0
            finally:
                await closer.aclose()
    if not r.succeeded:
        raise SystemExit(f"fan-out sync failed: {r.reason}: {r.message}")
    expected = parents * CHILDREN_PER_PARENT
    if r.items_fetched != expected:
        raise SystemExit(f"fan-out fetched {r.items_fetched} children, expected {expected}")
    ideal = parents * latency / concurrency
    return {
        "parents": parents,
        "latencySeconds": latency,
        "maxConcurrentRequests": concurrency,
        "seconds": seconds,
        "idealSeconds": ideal,
        "ratio": seconds / ideal,
        "requests": r.requests,
        "itemsFetched": r.items_fetched,
        "peakRssMb": peak_rss_mb(),
    }


async def _lag_probe(worst: list[float], period: float = 0.005) -> None:
    """Sleep ``period`` again and again; ``worst[0]``: the longest overshoot (the loop's worst stall),
    ``worst[1]``: when it happened (seconds after the probe started); ``worst[2:]``: every overshoot."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        t0 = loop.time()
        await asyncio.sleep(period)
        lag = loop.time() - t0 - period
        worst.append(lag)
        if lag > worst[0]:
            worst[0], worst[1] = lag, t0 - start


async def _warm(pool: WorkerPool) -> None:
    """Start every worker before the clock starts (a worker's imports take about a second)."""
    endpoint = items_mapping()
    plan = json.dumps({"mapping": endpoint.to_wire(), "pagination": source_spec("http://x").pagination.to_wire()})
    task = PageTask(plan, "main", b'{"items": [], "total": 0}', "warm-up")
    await asyncio.gather(*(pool.run(task, 60) for _ in range(pool.size * 2)))


async def measure_workers(url: str, items: int, workers: int, sources: int, mapping: str) -> dict[str, Any]:
    pool = WorkerPool(workers) if workers else None
    endpoint = items_mapping(mapping)
    worst = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        state = await SqliteStateStore.open_file(Path(tmp) / "state.db")
        try:
            if pool is not None:
                await _warm(pool)

            # The clients (TLS contexts) and the mapping (jq compiled) before the probe: the CLI and the
            # operator compile mappings before they sync; the probe measures the syncs themselves.
            spec = source_spec(url, max_pages=items // PAGE_SIZE + 10)
            s0 = time.perf_counter()
            clients = [await SourceClient.create(spec, NoSecrets()) for _ in range(sources)]
            setup = (time.perf_counter() - s0) / sources
            mapper = Mapper.from_spec(endpoint)

            async def one(k: int) -> Any:
                async with clients[k] as client:
                    client.pool = pool
                    return await sync_mapping(
                        client, f"bench{k}", endpoint, spec.pagination, NullSink(), state, owner=f"bench/{k}",
                        mapper=mapper,
                    )  # fmt: skip

            probe = asyncio.create_task(_lag_probe(worst))
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            results = await asyncio.gather(*(one(k) for k in range(sources)))
            seconds = time.perf_counter() - t0
            cpu = cpu_seconds() - cpu0
            probe.cancel()
        finally:
            await state.aclose()
            if pool is not None:
                pool.close()
    for r in results:
        if not r.succeeded:
            raise SystemExit(f"sync failed: {r.reason}: {r.message}")
    fetched = sum(r.items_fetched for r in results)
    return {
        "workers": workers,
        "sources": sources,
        "mapping": mapping,
        "seconds": seconds,
        "itemsFetched": fetched,
        "itemsPerSecond": fetched / seconds,
        "entitiesWritten": sum(r.entities_upserted for r in results),
        "worstLoopStallMs": worst[0] * 1000,
        "clientCreateMs": setup * 1000,
        "worstLoopStallAtSeconds": worst[1],
        "loopStallP99Ms": sorted(worst[2:])[int(len(worst[2:]) * 0.99)] * 1000 if len(worst) > 2 else 0.0,
        "engineMainCpuSeconds": cpu,
        "peakRssMb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sync")
    s.add_argument("--url", required=True)
    s.add_argument("--items", type=int, required=True, help="items the server serves (for maxPages)")
    s.add_argument("--sink", choices=["null", "catalog"], required=True)
    s.add_argument("--db", type=Path, required=True)
    s.add_argument("--mapping", choices=["paths", "jq"], default="paths")
    st = sub.add_parser("stages")
    st.add_argument("--url", required=True)
    st.add_argument("--items", type=int, required=True, help="items to fetch (at most what the server has)")
    f = sub.add_parser("fanout")
    f.add_argument("--url", required=True)
    f.add_argument("--parents", type=int, default=1000)
    f.add_argument("--latency", type=float, default=0.02)
    f.add_argument("--concurrency", type=int, default=10)
    w = sub.add_parser("workers")
    w.add_argument("--url", required=True)
    w.add_argument("--items", type=int, required=True, help="items the server serves")
    w.add_argument("--workers", type=int, required=True, help="worker processes (0: map in this process)")
    w.add_argument("--sources", type=int, default=1, help="sources synced at once, each the whole item set")
    w.add_argument("--mapping", choices=["paths", "jq"], default="paths")
    args = ap.parse_args()
    if args.what == "workers":
        out = asyncio.run(measure_workers(args.url, args.items, args.workers, args.sources, args.mapping))
    elif args.what == "sync":
        out = asyncio.run(measure_sync(args.url, args.items, args.sink, args.db, args.mapping))
    elif args.what == "stages":
        out = asyncio.run(measure_stages(args.url, args.items))
    else:
        out = asyncio.run(measure_fanout(args.url, args.parents, args.latency, args.concurrency))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
