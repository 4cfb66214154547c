"""The latency benchmark: whole syncs against a distant API (every item response delayed).

    .venv/bin/python -m bench --only latency [--latency-ms 50] [--latency-items 100000] [--latency-concurrency 10]
    .venv/bin/python -m bench.latency one --url URL --style page+total --items N [--concurrency 10] [--prefetch 9]

A :mod:`bench.server` answers every item request ``--latency-ms`` after it arrived (an asynchronous
wait; the server is never blocked), and each style below is synced once, in a fresh engine process,
into the null sink (change-detection state in SQLite, as for every remote sink), with the 10-field
path-only mapping of the e2e benchmark:

- ``page+total``: page pagination with ``totalPath`` (the page list is knowable);
- ``offset``: offset pagination without a total (the end is a short page), no prefetch;
- ``offset+prefetch``: the same with ``pagination.prefetch`` (speculative pages ahead);
- ``cursor``: a cursor in the body; ``nextLink``: a relative next link in the body;
- ``page+total/fetch``: ``page+total`` through the fetch loop alone (``iter_pages``: HTTP, JSON
  decoding, dataPath, pagination; no mapping, no sink), to show the fetching apart from the CPU
  the rest of the sync needs.

The same syncs against a second server without latency give the CPU-bound figure of each style
(the ``json.loads`` floor of the machine is measured before and after, since the VM is shared).
The ideal is ``min(requests in flight x pageSize / latency, rate limit, CPU-bound figure)``, where
the requests in flight are ``maxConcurrentRequests`` for the knowable page lists,
``min(maxConcurrentRequests, prefetch + 1)`` with prefetch, and 1 for the strictly sequential kinds
(cursor, nextLink, offset without prefetch), whose next request needs the previous response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data import PAGE_SIZE, items_mapping, page_json
from bench.server import ServerProcess
from httpsync.api.models import HttpEndpointMappingSpec, HttpSourceSpec, PaginationSpec

HERE = Path(__file__).resolve().parent
STYLES = ("page+total", "offset", "offset+prefetch", "cursor", "nextLink", "page+total/fetch")
DEFAULTS = {"latencyMs": 50.0, "items": 100_000, "concurrency": 10, "prefetch": 9}


def prefetch_supported() -> bool:
    """Whether this engine has ``pagination.prefetch`` (it did not before issue 15)."""
    return "prefetch" in PaginationSpec.model_fields


def pagination_of(style: str, prefetch: int) -> tuple[str, dict[str, Any]]:
    """The endpoint path and the pagination spec of a style."""
    style = style.removesuffix("/fetch")
    if style == "page+total":
        return "/items", {"type": "page", "pageSize": PAGE_SIZE, "totalPath": ".total"}
    if style in ("offset", "offset+prefetch"):
        spec: dict[str, Any] = {"type": "offset", "pageSize": PAGE_SIZE}
        if style == "offset+prefetch":
            spec["prefetch"] = prefetch
        return "/offset-items", spec
    if style == "cursor":
        return "/cursor-items", {"type": "cursor", "pageSize": PAGE_SIZE, "cursorPath": ".nextCursor"}
    if style == "nextLink":
        return "/link-items", {"type": "nextLink", "pageSize": PAGE_SIZE, "sizeParam": "size", "nextLinkPath": ".next"}
    raise ValueError(f"unknown style {style!r}")


def specs(url: str, style: str, items: int, concurrency: int, prefetch: int) -> tuple[HttpSourceSpec, Any]:
    kind, pagination = pagination_of(style, prefetch)
    pagination["maxPages"] = items // PAGE_SIZE + 10
    source = HttpSourceSpec.model_validate(
        {"baseUrl": url, "maxConcurrentRequests": concurrency, "retry": {"maxRetries": 0}, "pagination": pagination}
    )
    mapping = items_mapping().model_dump(by_alias=True, exclude_none=True)
    mapping["kind"] = kind
    return source, HttpEndpointMappingSpec.model_validate(mapping)


async def measure(url: str, style: str, items: int, concurrency: int, prefetch: int) -> dict[str, Any]:
    """One first sync of ``style`` into the null sink (state in a temporary SQLite file)."""
    from bench.e2e import NoSecrets, open_sink  # the e2e benchmark's helpers
    from httpsync.engine.client import SourceClient
    from httpsync.engine.fetch import FetchCounters, iter_pages
    from httpsync.engine.sync import sync_mapping

    source, mapping = specs(url, style, items, concurrency, prefetch)
    if style.endswith("/fetch"):
        counters = FetchCounters()
        async with await SourceClient.create(source, NoSecrets()) as client:
            t0 = time.perf_counter()
            async for _ in iter_pages(client, mapping, source.pagination, counters):
                pass
            seconds = time.perf_counter() - t0
        if counters.items_fetched != items:
            raise SystemExit(f"{style} fetched {counters.items_fetched} items, not {items}")
        return {
            "style": style,
            "seconds": seconds,
            "itemsFetched": counters.items_fetched,
            "itemsPerSecond": counters.items_fetched / seconds,
            "pages": counters.pages,
            "requests": counters.requests,
        }
    with tempfile.TemporaryDirectory(prefix="httpsync-latency-") as tmp:
        async with await SourceClient.create(source, NoSecrets()) as client:
            sink, state, closer = await open_sink("null", Path(tmp) / "state.db")
            try:
                t0 = time.perf_counter()
                r = await sync_mapping(client, "latency", mapping, source.pagination, sink, state, owner="bench/lat")
                seconds = time.perf_counter() - t0
            finally:
                await closer.aclose()
    if not r.succeeded:
        raise SystemExit(f"{style} sync failed: {r.reason}: {r.message}")
    if r.items_fetched != items:
        raise SystemExit(f"{style} sync fetched {r.items_fetched} items, not {items}")
    return {
        "style": style,
        "seconds": seconds,
        "itemsFetched": r.items_fetched,
        "itemsPerSecond": r.items_fetched / seconds,
        "pages": r.pages,
        "requests": r.requests,
        "entities": r.entities,
    }


def json_floor(pages: int = 200) -> float:
    """Items/s of ``json.loads`` on pages of the benchmark's items, best of 3: how fast this machine is now."""
    bodies = [page_json(p, PAGE_SIZE, pages * PAGE_SIZE) for p in range(1, pages + 1)]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for body in bodies:
            json.loads(body)
        best = min(best, time.perf_counter() - t0)
    return pages * PAGE_SIZE / best


def in_flight(style: str, concurrency: int, prefetch: int) -> int:
    """Requests that can be in flight at once for a style (see the module docstring)."""
    if style.startswith("page+total"):
        return concurrency
    if style == "offset+prefetch":
        return min(concurrency, prefetch + 1)
    return 1


def ideal(style: str, latency: float, concurrency: int, prefetch: int, cpu_bound: float, rps: float | None) -> float:
    network = in_flight(style, concurrency, prefetch) * PAGE_SIZE / latency if latency > 0 else float("inf")
    rate = rps * PAGE_SIZE if rps else float("inf")
    return min(network, rate, cpu_bound)


def _engine(*args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.latency", "one", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE.parent)
    if proc.returncode != 0:
        raise SystemExit(f"bench.latency {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(
    *,
    latency_ms: float = DEFAULTS["latencyMs"],
    items: int = int(DEFAULTS["items"]),
    concurrency: int = int(DEFAULTS["concurrency"]),
    prefetch: int = int(DEFAULTS["prefetch"]),
    styles: tuple[str, ...] = STYLES,
) -> dict[str, Any]:
    """Every style against a server without latency (the CPU-bound figure), then with ``latency_ms``."""
    if not prefetch_supported():
        styles = tuple(s for s in styles if s != "offset+prefetch")
    t0 = time.perf_counter()
    latency = latency_ms / 1000
    out: dict[str, Any] = {
        "latencyMs": latency_ms,
        "items": items,
        "pageSize": PAGE_SIZE,
        "maxConcurrentRequests": concurrency,
        "prefetch": prefetch,
        "requestsPerSecond": None,
        "jsonFloorItemsPerSecond": [json_floor()],
        "styles": {},
    }
    cpu: dict[str, float] = {}
    with ServerProcess(items=items, parents=1) as url:
        for style in styles:
            args = ["--url", url, "--style", style, "--items", str(items)]
            r = _engine(*args, "--concurrency", str(concurrency), "--prefetch", str(prefetch))
            cpu[style] = r["itemsPerSecond"]
            print(f"  latency 0 ms   {style:16s} {r['itemsPerSecond']:>9,.0f} items/s  (CPU-bound figure)", flush=True)
    with ServerProcess(items=items, parents=1, latency_ms=latency_ms) as url:
        for style in styles:
            args = ["--url", url, "--style", style, "--items", str(items)]
            r = _engine(*args, "--concurrency", str(concurrency), "--prefetch", str(prefetch))
            best = ideal(style, latency, concurrency, prefetch, cpu[style], None)
            r |= {"cpuBoundItemsPerSecond": cpu[style], "idealItemsPerSecond": best}
            r["ratioToIdeal"] = r["itemsPerSecond"] / best
            out["styles"][style] = r
            print(
                f"  latency {latency_ms:g} ms {style:16s} {r['itemsPerSecond']:>9,.0f} items/s  "
                f"{r['seconds']:6.1f} s  ideal {best:>9,.0f}  = {r['ratioToIdeal']:.0%} of ideal",
                flush=True,
            )
    out["jsonFloorItemsPerSecond"].append(json_floor())
    floors = ", ".join(f"{f:,.0f}" for f in out["jsonFloorItemsPerSecond"])
    print(f"  json.loads floor before / after: {floors} items/s", flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


def rows(results: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(figure, value, style) for the benchmark table (style None: not a sync)."""
    lat = results["latencyMs"]
    head = f"latency {lat:g} ms, {results['items']:,} items, pages of {results['pageSize']}, " + (
        f"{results['maxConcurrentRequests']} in flight"
    )
    out = []
    for style, r in results["styles"].items():
        label = {
            "offset+prefetch": f"offset+prefetch (prefetch {results['prefetch']})",
            "page+total/fetch": "page+total, fetch loop alone",
        }.get(style, style)
        value = (
            f"{r['itemsPerSecond']:,.0f} items/s; ideal {r['idealItemsPerSecond']:,.0f} "
            f"(CPU-bound {r['cpuBoundItemsPerSecond']:,.0f}) = {r['ratioToIdeal']:.0%}"
        )
        out.append((f"{head}: {label}", value, style))
    if results.get("jsonFloorItemsPerSecond"):
        floors = " / ".join(f"{f:,.0f}" for f in results["jsonFloorItemsPerSecond"])
        out.append(("latency run: json.loads floor before / after (machine speed)", f"{floors} items/s", None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    one = sub.add_parser("one", help="one sync, in this process; prints a JSON line")
    one.add_argument("--url", required=True)
    one.add_argument("--style", choices=STYLES, required=True)
    one.add_argument("--items", type=int, required=True, help="items the server serves")
    one.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"])
    one.add_argument("--prefetch", type=int, default=DEFAULTS["prefetch"])
    args = ap.parse_args()
    out = asyncio.run(measure(args.url, args.style, args.items, args.concurrency, args.prefetch))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
