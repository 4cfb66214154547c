"""Mapping throughput, in items/s, against the floor of decoding the same pages with json.loads.

    .venv/bin/python -m bench.bench_mapping [--pages 300] [--repeat 5]

Pages of 100 items as the loopback API serves them (``{"items": [...], ...}``, items of ten fields
with a nested object). The floor is ``json.loads`` of each page's text; each mapping then maps the
already decoded items of the same pages (best of ``--repeat``), and its ratio is its time over the
floor's time (1.0: as fast as decoding; the fetch loop pays both).

Measured: a 10-field path-only mapping with a query filter, the same without a filter, and a
10-field mapping that needs real jq (interpolation, ``map``, ``select``, ``//``), in the engine's
hybrid mode (paths in Python, the rest as one jq program per page). For reference: the same
mappings with every expression in jq, and one jq call per field per item (the approach of Port's
Ocean mapper). The suite also runs the mappings on "wide" items (60 more fields, ~3 KB, like a
GitHub repository object), where handing jq only the fields it reads matters most.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import jq

from bench.data import PATHS, PATHS_QUERY, REAL, REAL_QUERY, dumps, make_wide_item, page_json
from httpsync.api.models import EntityMappingSpec
from httpsync.engine.mapping import Mapper


@dataclass
class Row:
    key: str  # stable name in results.json
    label: str
    items_per_second: float
    ratio: float | None  # time over the json.loads floor's time
    items: int


def per_field_per_item(query: str, spec: EntityMappingSpec) -> Callable[[list[Any]], int]:
    """The reference integration's approach: every expression evaluated per item."""
    exprs = [spec.identifier, spec.blueprint, spec.title or "null", *spec.properties.values()]
    progs = [jq.compile(e) for e in exprs]
    q = jq.compile(query)

    def run(items: list[Any]) -> int:
        n = 0
        for item in items:
            if q.input_value(item).first() is True:
                [p.input_value(item).first() for p in progs]
                n += 1
        return n

    return run


def best_rate(pages: list[Any], fn: Callable[[Any], Any], items: int, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for page in pages:
            fn(page)
        best = max(best, items / (time.perf_counter() - start))
    return best


def check(mapper: Mapper, items: list[Any]) -> None:
    sample = mapper.map_page(items)
    assert sample.entities and not sample.errors, sample.errors


def run_suite(pages_text: list[str], repeat: int, prefix: str = "") -> list[Row]:
    """Every mapping on ``pages_text`` (page bodies as served); rows in the order measured."""
    items_pages = [json.loads(t)["items"] for t in pages_text]
    items = sum(len(p) for p in items_pages)
    floor = best_rate(pages_text, json.loads, items, repeat)
    rows = [Row(f"{prefix}floor", "json.loads of the same pages (the floor)", floor, 1.0, items)]

    def add(key: str, label: str, fn: Callable[[Any], Any], pages: list[Any] = items_pages, rep: int = repeat) -> None:
        n = sum(len(p) for p in pages)
        rate = best_rate(pages, fn, n, rep)
        rows.append(Row(prefix + key, label, rate, floor / rate, n))

    cases = (
        ("filter", "10-field path-only mapping, query filter", PATHS_QUERY, PATHS),
        ("paths", "10-field path-only mapping, no filter", "true", PATHS),
        ("jq", "10-field mapping needing real jq (hybrid)", REAL_QUERY, REAL),
    )
    for key, label, query, spec in cases:
        mapper = Mapper(query, spec)
        assert mapper.fast_path == (key != "jq")
        check(mapper, items_pages[0])
        add(key, label, mapper.map_page)
    for key, _label, query, spec in cases[1:]:
        mapper = Mapper(query, spec, fast=False)
        check(mapper, items_pages[0])
        add(f"{key}_all_jq", f"  same as {key!r}, every expression in jq", mapper.map_page)
    few = items_pages[: max(2, len(items_pages) // 20)]
    add("jq_per_field", "  same as 'jq', one jq call per field per item", per_field_per_item(REAL_QUERY, REAL), few, 1)
    return rows


def wide_pages(pages: int) -> list[str]:
    return [
        dumps({"items": [make_wide_item(p * 100 + i) for i in range(100)], "page": p + 1, "size": 100})
        for p in range(pages)
    ]


def run(pages: int = 300, repeat: int = 5, *, wide: bool = True) -> list[Row]:
    rows = run_suite([page_json(p, 100, pages * 100) for p in range(1, pages + 1)], repeat)
    if wide:
        rows += run_suite(wide_pages(max(2, pages // 6)), max(1, repeat // 2), prefix="wide_")
    return rows


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        if r.key.endswith("floor"):
            size = "wide items (~3 KB)" if r.key.startswith("wide_") else "items of ten fields (~250 B)"
            print(f"-- {r.items:,} {size}")
        ratio = f"{r.ratio:6.2f}x floor" if r.ratio is not None else ""
        print(f"{r.label:60s} {r.items_per_second:>11,.0f} items/s  {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    rows = run(args.pages, args.repeat)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print_rows(rows)


if __name__ == "__main__":
    main()
