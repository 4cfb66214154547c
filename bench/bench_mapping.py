"""Mapping throughput, in items/s, against the floor of decoding the same pages with json.loads.

    .venv/bin/python bench/bench_mapping.py [--pages 200] [--repeat 3]

Pages of 100 items, each ~10 fields with a nested object; mappings of 10 fields with a query filter.
Reported per mode: items/s (best of --repeat) and the ratio to json.loads of the same pages.
The same mappings then run on "wide" items (the same fields plus 60 more, ~3 KB, like a GitHub
repository object), where handing jq only the fields the expressions read matters most.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import jq

from httpsync.api.models import EntityMappingSpec
from httpsync.engine.mapping import Mapper

DEPARTMENTS = ["engineering", "sales", "ops", "product", "support"]


def make_wide_item(i: int) -> dict[str, Any]:
    item = make_item(i)
    for k in range(20):
        item[f"{k}_url"] = f"https://api.example.com/repos/org/repo-{i}/{k}{{/number}}"
        item[f"count_{k}"] = i * k
        item[f"flag_{k}"] = bool((i + k) % 2)
    item["owner"] = {"login": f"user{i}", "id": i, "site_admin": False, "type": "User"}
    item["license"] = {"key": "apache-2.0", "name": "Apache License 2.0", "spdx_id": "Apache-2.0"}
    return item


def make_item(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"User {i}",
        "email": f"user{i}@example.com",
        "department": DEPARTMENTS[i % len(DEPARTMENTS)],
        "is_active": i % 7 != 0,
        "created_at": "2024-01-02T03:04:05Z",
        "score": i * 1.5,
        "tags": ["a", "b", f"t{i % 3}"],
        "manager": {"id": i // 10, "name": f"Manager {i // 10}", "email": f"mgr{i // 10}@example.com"},
        "login_count": i * 3,
    }


PATHS = EntityMappingSpec(
    identifier=".id",
    blueprint='"user"',
    title=".name",
    properties={
        "email": ".email",
        "department": ".department",
        "created": ".created_at",
        "score": ".score",
        "logins": ".login_count",
        "manager": ".manager.email",
        "tags": ".tags",
    },
)
PATHS_QUERY = ".is_active"

REAL = EntityMappingSpec(
    identifier=".id | tostring",
    blueprint='"user"',
    title='"\\(.name) <\\(.email)>"',
    properties={
        "email": ".email",
        "department": ".department",
        "tags": '.tags | map("tag-" + .)',
        "extraTags": '[.tags[] | select(. != "a")]',
        "manager": '.manager.email // "none"',
        "created": ".created_at",
        "logins": ".login_count",
    },
)
REAL_QUERY = '.is_active and .department != "ops"'


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


def measure(
    label: str, pages_text: list[str], fn: Callable[[list[Any]], Any], repeat: int, floor: float | None
) -> float:
    pages = [json.loads(t) for t in pages_text]
    items = sum(len(p) for p in pages)
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for page in pages:
            fn(page)
        best = max(best, items / (time.perf_counter() - start))
    ratio = f"  ({floor / best:4.2f}x json.loads time)" if floor else ""
    print(f"{label:58s} {best:>11,.0f} items/s{ratio}")
    return best


def run_suite(pages_text: list[str], repeat: int) -> None:
    print(f"{len(pages_text)} pages x 100 items, {len(pages_text[0]) // 100} bytes/item")
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for t in pages_text:
            json.loads(t)
        best = max(best, len(pages_text) * 100 / (time.perf_counter() - start))
    floor = best
    print(f"{'json.loads of the pages (floor)':58s} {floor:>11,.0f} items/s")

    fast = Mapper(PATHS_QUERY, PATHS)
    assert fast.fast_path
    sample = fast.map_page(json.loads(pages_text[0]))
    assert sample.entities and not sample.errors, sample.errors
    measure("path-only mapping, fast path (Python)", pages_text, fast.map_page, repeat, floor)
    all_jq = Mapper(PATHS_QUERY, PATHS, fast=False).map_page
    measure("path-only mapping, all in jq (one program per page)", pages_text, all_jq, repeat, floor)

    real = Mapper(REAL_QUERY, REAL)
    sample = real.map_page(json.loads(pages_text[0]))
    assert sample.entities and not sample.errors, sample.errors
    measure("real jq mapping (interpolation/map/select), hybrid", pages_text, real.map_page, repeat, floor)
    all_jq = Mapper(REAL_QUERY, REAL, fast=False).map_page
    measure("real jq mapping, all in jq (one program per page)", pages_text, all_jq, repeat, floor)
    few = pages_text[: max(2, len(pages_text) // 20)]
    reference = per_field_per_item(REAL_QUERY, REAL)
    measure("real jq mapping, per field per item (reference approach)", few, reference, 1, floor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    run_suite([json.dumps([make_item(p * 100 + i) for i in range(100)]) for p in range(args.pages)], args.repeat)
    print()
    wide = max(2, args.pages // 4)
    run_suite([json.dumps([make_wide_item(p * 100 + i) for i in range(100)]) for p in range(wide)], args.repeat)


if __name__ == "__main__":
    main()
