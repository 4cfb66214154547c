"""The benchmark suite: end to end through the engine, mapping alone, nested fan-out, latency.

    .venv/bin/python -m bench [--items 1000000] [--only e2e|mapping|fanout|latency] [--out bench/results.json]
    make bench

- e2e: a loopback API in its own process (:mod:`bench.server`) serves ``--items`` items in pages of
  100; each sync runs in a fresh engine process (:mod:`bench.e2e`), so its peak RSS is its own. Into
  the null sink (state in SQLite, as for remote sinks) and into the embedded catalog: a first sync
  (everything new), then a second one of the unchanged data (must write nothing).
- mapping: items/s of three 10-field mappings against json.loads of the same pages, in this process.
- fanout: 1,000 parents, one child page each answered after 20 ms, maxConcurrentRequests 10:
  wall time against the ideal (parents x latency / concurrency = 2 s).
- operator (only with ``--only operator``): the operator on the real control plane, N sources x 2
  mappings (:mod:`bench.operator`).
- latency (only with ``--only latency``: it is mostly waiting, ~2-3 minutes): every pagination style
  against an API answering after ``--latency-ms``, items/s against the ideal (:mod:`bench.latency`).

Prints a table (figures and targets) and writes ``--out`` as JSON. ``--items 200000`` is the quick
mode for iteration. Not part of the test suite: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bench_mapping, latency
from bench.server import ServerProcess

HERE = Path(__file__).resolve().parent
SECTIONS = ("mapping", "e2e", "fanout")  # the default run
OPTIONAL_SECTIONS = ("latency", "operator", "workers")  # only with --only
FANOUT = {"parents": 1000, "latency": 0.02, "concurrency": 10}
STAGE_ITEMS = 100_000  # items for the breakdown (fetch alone, fetch + map)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpuModel": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def engine_process(*args: str) -> dict[str, Any]:
    """Run ``python -m bench.e2e ARGS`` in a fresh process; its JSON line."""
    cmd = [sys.executable, "-m", "bench.e2e", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE.parent)
    if proc.returncode != 0:
        raise SystemExit(f"bench.e2e {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_e2e(url: str, items: int, mappings: list[str]) -> list[dict[str, Any]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="httpsync-bench-") as tmp:
        for mapping in mappings:
            for sink in ("null", "catalog"):
                if mapping != "paths" and sink != "null":
                    continue
                db = Path(tmp) / f"{sink}-{mapping}.db"
                for sync in ("first", "second"):
                    args = ["sync", "--url", url, "--items", str(items), "--sink", sink, "--db", str(db)]
                    out = engine_process(*args, "--mapping", mapping) | {"sync": sync}
                    print(
                        f"  e2e {sink:7s} {mapping:5s} {sync:6s} sync: {out['itemsPerSecond']:>9,.0f} items/s "
                        f"{out['requestsPerSecond']:>6,.0f} req/s  {out['seconds']:6.1f} s  written "
                        f"{out['entitiesWritten']:>9,}  peak RSS {out['peakRssMb']:4.0f} MB",
                        flush=True,
                    )
                    runs.append(out)
                    if mapping != "paths":
                        break  # the jq mapping: one sync, for its throughput
    return runs


def run_stages(url: str, items: int) -> dict[str, Any]:
    out = engine_process("stages", "--url", url, "--items", str(items))
    for name, r in out.items():
        print(f"  {name:11s} {r['itemsPerSecond']:>9,.0f} items/s {r['requestsPerSecond']:>6,.0f} req/s", flush=True)
    return out


def run_fanout(url: str) -> dict[str, Any]:
    out = engine_process(
        "fanout",
        "--url",
        url,
        "--parents",
        str(FANOUT["parents"]),
        "--latency",
        str(FANOUT["latency"]),
        "--concurrency",
        str(FANOUT["concurrency"]),
    )
    print(f"  fan-out: {out['seconds']:.2f} s for an ideal of {out['idealSeconds']:.2f} s", flush=True)
    return out


# --------------------------------------------------------------------------- the table


def _find(runs: list[dict[str, Any]], sink: str, sync: str, mapping: str = "paths") -> dict[str, Any] | None:
    for r in runs:
        if r["sink"] == sink and r["sync"] == sync and r["mapping"] == mapping:
            return r
    return None


WORKER_COUNTS = (0, 1, 2)  # 0: pages mapped in the engine's own process (no pool)
MANY_SOURCES = 20
JQ_ITEMS = 200_000  # the real-jq mapping is slower: fewer items


def run_workers(items: int) -> dict[str, Any]:
    """One source over ``items`` items with 0, 1 and 2 workers, then 20 sources at once (``items / 20``
    each) with 0 and 2 workers; each run in a fresh engine process, with its event-loop lag probe."""
    out: dict[str, Any] = {"items": items, "single": [], "jq": [], "many": []}
    with ServerProcess(items=items) as url:
        for workers in WORKER_COUNTS:
            r = engine_process("workers", "--url", url, "--items", str(items), "--workers", str(workers))
            _print_workers(r)
            out["single"].append(r)
    jq_items = min(items, JQ_ITEMS)
    with ServerProcess(items=jq_items) as url:
        for workers in WORKER_COUNTS:
            args = ["--url", url, "--items", str(jq_items), "--workers", str(workers), "--mapping", "jq"]
            r = engine_process("workers", *args)
            _print_workers(r)
            out["jq"].append(r)
    each = items // MANY_SOURCES
    with ServerProcess(items=each) as url:
        for workers in (0, 2):
            args = ["--url", url, "--items", str(each), "--workers", str(workers), "--sources", str(MANY_SOURCES)]
            r = engine_process("workers", *args)
            _print_workers(r)
            out["many"].append(r)
    return out


def _print_workers(r: dict[str, Any]) -> None:
    print(
        f"  {r['sources']:2d} source(s), {r['mapping']:5s} {r['workers']} worker(s): "
        f"{r['itemsPerSecond']:>9,.0f} items/s "
        f"{r['seconds']:6.1f} s  worst loop stall {r['worstLoopStallMs']:5.1f} ms (p99 {r['loopStallP99Ms']:.1f} ms)"
        f"  main CPU {r['engineMainCpuSeconds']:.1f} s",
        flush=True,
    )


def _workers_rows(results: dict[str, Any], row: Any) -> None:
    w = results.get("workers")
    if not w:
        return
    single = {r["workers"]: r for r in w["single"]}
    label = f"{w['items']:,} items"
    rates = " / ".join(f"{single[n]['itemsPerSecond']:,.0f}" for n in WORKER_COUNTS if n in single)
    row(f"workers, {label}: items/s in-process / 1 / 2 workers", rates)
    if 1 in single and 2 in single:
        ratio = single[2]["itemsPerSecond"] / single[1]["itemsPerSecond"]
        row("workers: 2 workers vs 1", f"{ratio:.2f}x", ">= 1.6x", ratio >= 1.6)
    for n in WORKER_COUNTS:
        if n in single and n > 0:
            stall = single[n]["worstLoopStallMs"]
            row(
                f"workers: event loop worst stall, {n} worker(s) (p99)",
                f"{stall:.0f} ms ({single[n]['loopStallP99Ms']:.0f} ms)",
                "< 50 ms",
                stall < 50,
            )
    jq = {r["workers"]: r for r in w.get("jq", [])}
    if jq:
        rates = " / ".join(f"{jq[n]['itemsPerSecond']:,.0f}" for n in WORKER_COUNTS if n in jq)
        row(f"workers, real-jq mapping, {jq[0]['itemsFetched']:,} items: items/s in-process / 1 / 2 workers", rates)
        if 1 in jq and 2 in jq:
            row("workers, real-jq mapping: 2 workers vs 1", f"{jq[2]['itemsPerSecond'] / jq[1]['itemsPerSecond']:.2f}x")
    many = {r["workers"]: r for r in w["many"]}
    if many:
        each = w["items"] // MANY_SOURCES
        rates = " / ".join(f"{many[n]['itemsPerSecond']:,.0f}" for n in (0, 2) if n in many)
        row(f"workers: {MANY_SOURCES} sources at once ({each:,} items each): items/s in-process / 2 workers", rates)
        if 2 in many:
            stall = many[2]["worstLoopStallMs"]
            name = f"workers: {MANY_SOURCES} sources, 2 workers: worst loop stall"
            row(name, f"{stall:.0f} ms", "< 50 ms", stall < 50)


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: one row per figure, with its target (if any) and whether it is met."""
    rows: list[dict[str, Any]] = []

    def row(name: str, value: str, target: str = "", met: bool | None = None) -> None:
        rows.append({"figure": name, "value": value, "target": target, "met": met})

    _workers_rows(results, row)
    runs = results.get("e2e", {}).get("runs", [])
    items = results.get("e2e", {}).get("items", 0)
    for sink, goal in (("null", 40_000), ("catalog", 25_000)):
        first, second = _find(runs, sink, "first"), _find(runs, sink, "second")
        if first is None or second is None:
            continue
        label = "null sink" if sink == "null" else "embedded catalog"
        rate = first["itemsPerSecond"]
        row(f"e2e {label}, first sync: items/s", f"{rate:,.0f}", f">= {goal:,}", rate >= goal)
        row(f"e2e {label}, first sync: requests/s", f"{first['requestsPerSecond']:,.0f}")
        row(f"e2e {label}, first sync: time", f"{first['seconds']:.1f} s")
        row(
            f"e2e {label}, first sync: engine / server CPU",
            f"{first['engineCpuSeconds']:.1f} s / {first['serverCpuSeconds']:.1f} s",
        )
        written = second["entitiesWritten"]
        row(f"e2e {label}, unchanged re-sync: entities written", f"{written:,}", "0", written == 0)
        row(
            f"e2e {label}, unchanged re-sync: time",
            f"{second['seconds']:.1f} s ({second['itemsPerSecond']:,.0f} items/s)",
        )
        peak = max(first["peakRssMb"], second["peakRssMb"])
        row(f"e2e {label}, peak RSS ({items:,} items)", f"{peak:.0f} MB", "< 200 MB", peak < 200)
    stages = results.get("e2e", {}).get("stages", {})
    for key, name in (("fetchOnly", "fetch loop alone"), ("fetchAndMap", "fetch + map")):
        if key in stages:
            r = stages[key]
            row(f"e2e breakdown: {name}", f"{r['itemsPerSecond']:,.0f} items/s, {r['requestsPerSecond']:,.0f} req/s")
    jq_run = _find(runs, "null", "first", "jq")
    if jq_run is not None:
        row("e2e null sink, real-jq mapping: items/s", f"{jq_run['itemsPerSecond']:,.0f}")

    mapping = {r["key"]: r for r in results.get("mapping", {}).get("rows", [])}
    if mapping:
        row("mapping: json.loads floor, items/s", f"{mapping['floor']['items_per_second']:,.0f}")
        for key, name in (("filter", "path-only + query filter"), ("paths", "path-only")):
            r = mapping[key]
            value = f"{r['items_per_second']:,.0f} items/s, {r['ratio']:.2f}x floor"
            row(f"mapping: {name}", value, "<= 2x floor", r["ratio"] <= 2)
        r = mapping["jq"]
        value = f"{r['items_per_second']:,.0f} items/s, {r['ratio']:.1f}x floor"
        row("mapping: real jq (hybrid)", value, ">= 40,000 items/s", r["items_per_second"] >= 40_000)
        r = mapping["jq_all_jq"]
        row("mapping: real jq, every expression in jq", f"{r['items_per_second']:,.0f} items/s")
        r = mapping["jq_per_field"]
        row("mapping: real jq, one jq call per field per item", f"{r['items_per_second']:,.0f} items/s")
        if "wide_floor" in mapping:
            f, p, j = mapping["wide_floor"], mapping["wide_paths"], mapping["wide_jq"]
            row(
                "mapping, wide items: floor / path-only / real jq",
                f"{f['items_per_second']:,.0f} / {p['items_per_second']:,.0f} / {j['items_per_second']:,.0f} items/s",
            )

    fan = results.get("fanout")
    if fan:
        value = f"{fan['seconds']:.2f} s vs {fan['idealSeconds']:.2f} s ideal = {fan['ratio']:.2f}x"
        row("nested fan-out (1,000 parents, 20 ms, 10 at once)", value, "<= 1.5x ideal", fan["ratio"] <= 1.5)

    if results.get("latency"):
        lat = results["latency"]
        targets = {"page+total": 15_000} if lat["latencyMs"] == 50 and lat["maxConcurrentRequests"] == 10 else {}
        for name, value, style in latency.rows(lat):
            goal = targets.get(style or "")
            met = lat["styles"][style]["itemsPerSecond"] >= goal if style and goal else None
            row(name, value, f">= {goal:,} items/s" if goal else "", met)

    if results.get("operator"):
        from bench import operator as operator_bench

        for name, value, target, met in operator_bench.rows(results["operator"]):
            row(name, value, target, met)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    w1 = max(len(r["figure"]) for r in rows)
    w2 = max(len(r["value"]) for r in rows)
    w3 = max([len(r["target"]) for r in rows] + [6])
    print(f"\n{'figure':{w1}s}  {'value':>{w2}s}  {'target':{w3}s}  met")
    print(f"{'-' * w1}  {'-' * w2}  {'-' * w3}  ---")
    for r in rows:
        met = "" if r["met"] is None else "yes" if r["met"] else "NO"
        print(f"{r['figure']:{w1}s}  {r['value']:>{w2}s}  {r['target']:{w3}s}  {met}")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | value | target | met |", "|---|---:|---|---|"]
    for r in rows:
        met = "" if r["met"] is None else "yes" if r["met"] else "**no**"
        lines.append(f"| {r['figure']} | {r['value']} | {r['target']} | {met} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000, help="items the API serves for e2e (default 1,000,000)")
    ap.add_argument(
        "--only", choices=SECTIONS + OPTIONAL_SECTIONS, action="append", help="run only this part (repeatable)"
    )
    ap.add_argument("--latency-ms", type=float, default=50.0, help="latency: delay of each item response (ms)")
    ap.add_argument("--latency-items", type=int, default=100_000, help="latency: items per sync (default 100,000)")
    ap.add_argument("--latency-concurrency", type=int, default=10, help="latency: maxConcurrentRequests")
    ap.add_argument("--latency-prefetch", type=int, default=9, help="latency: pagination.prefetch of offset+prefetch")
    ap.add_argument("--sources", type=int, default=500, help="operator: HttpSources, 2 mappings each (default 500)")
    ap.add_argument("--large-items", type=int, default=300_000, help="operator: items of the one large source")
    ap.add_argument("--profile", type=Path, metavar="FILE", help="operator: run it under cProfile, stats to FILE")
    ap.add_argument("--jq-e2e", action="store_true", help="also sync once end to end with the real-jq mapping")
    ap.add_argument("--mapping-pages", type=int, default=300, help="pages of 100 items for the mapping part")
    ap.add_argument(
        "--out",
        type=Path,
        help="where to write the results (default bench/results.json; bench/results-latency.json for --only latency)",
    )
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for bench/README.md)")
    ap.add_argument("--show", type=Path, metavar="RESULTS", help="print the table of a saved run; run nothing")
    args = ap.parse_args()
    if args.show:
        saved = json.loads(args.show.read_text())
        rows = figures(saved)
        if args.markdown:
            print(markdown_table(rows))
        else:
            print_table(rows)
        print(f"\n{saved['command']}: {saved['seconds']:.0f} s on {saved['machine']['cpus']} CPUs, {saved['date']}")
        return
    sections = args.only or list(SECTIONS)
    if args.out is None:
        alone = set(sections) <= set(OPTIONAL_SECTIONS)
        args.out = HERE / (f"results-{sections[0]}.json" if alone and len(sections) == 1 else "results.json")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    print(f"httpsync benchmarks on {results['machine']['cpus']} CPUs: {', '.join(sections)}", flush=True)

    if "mapping" in sections:
        print("mapping ...", flush=True)
        t0 = time.perf_counter()
        rows = bench_mapping.run(args.mapping_pages, 5)
        bench_mapping.print_rows(rows)
        results["mapping"] = {"rows": [asdict(r) for r in rows], "seconds": time.perf_counter() - t0}

    if "e2e" in sections or "fanout" in sections:
        items = args.items if "e2e" in sections else 0
        server = ServerProcess(items=items, parents=FANOUT["parents"], latency=FANOUT["latency"])
        with server as url:
            print(f"loopback API at {url}: {items:,} items rendered in {server.render_seconds:.1f} s", flush=True)
            if "e2e" in sections:
                t0 = time.perf_counter()
                runs = run_e2e(url, items, ["paths", "jq"] if args.jq_e2e else ["paths"])
                stages = run_stages(url, min(items, STAGE_ITEMS))
                results["e2e"] = {"items": items, "runs": runs, "stages": stages, "seconds": time.perf_counter() - t0}
            if "fanout" in sections:
                results["fanout"] = run_fanout(url) | {"parentsConcurrency": FANOUT["concurrency"]}

    if "latency" in sections:
        print(f"latency ({args.latency_ms:g} ms, {args.latency_items:,} items) ...", flush=True)
        results["latency"] = latency.run(
            latency_ms=args.latency_ms,
            items=args.latency_items,
            concurrency=args.latency_concurrency,
            prefetch=args.latency_prefetch,
        )

    if "operator" in sections:
        from bench import operator as operator_bench

        print(f"operator ({args.sources} sources x 2 mappings, real control plane) ...", flush=True)
        results["operator"] = operator_bench.run(
            sources=args.sources, large_items=args.large_items, profile=args.profile
        )
    if "workers" in sections:
        print(f"workers ({args.items:,} items) ...", flush=True)
        results["workers"] = run_workers(args.items)

    results["seconds"] = time.perf_counter() - started
    results["figures"] = figures(results)
    print_table(results["figures"])
    if args.markdown:
        print("\n" + markdown_table(results["figures"]))
    print(f"\n{results['command']}: {results['seconds']:.0f} s; results in {args.out}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
