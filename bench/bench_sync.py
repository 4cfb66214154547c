"""The sync pipeline without HTTP: map -> diff -> push -> commit -> delete, on generated pages.

    .venv/bin/python bench/bench_sync.py [--entities 1000000] [--page 1000] [--sink catalog|null]

Runs three syncs of one mapping into a fresh SQLite file (first: all new; second: all unchanged;
third: 10% of the items gone, guard allowing it) and prints throughput and the peak RSS, which
should stay flat as --entities grows (seen-in-this-sync lives in SQLite, not in Python).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from httpsync.api.models import HttpEndpointMappingSpec, PaginationSpec
from httpsync.engine import sync as sync_module
from httpsync.engine.fetch import FetchCounters
from httpsync.engine.sync import sync_mapping
from httpsync.sinks import Catalog, NullSink

MAPPING = HttpEndpointMappingSpec.model_validate(
    {
        "sourceRef": {"name": "bench"},
        "kind": "/items",
        "selector": {"query": ".active"},
        "mappings": {
            "identifier": ".id | tostring",
            "blueprint": '"item"',
            "title": ".name",
            "properties": {"email": ".email", "team": ".team", "score": ".score", "manager": ".manager.email"},
        },
        "deletionGuard": {"maxDeletePercent": 20},
    }
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fake_pages(total: int, page: int, skip_every: int = 0) -> Any:
    async def iter_pages(client: Any, m: Any, p: Any, counters: FetchCounters) -> AsyncIterator[list[Any]]:
        for start in range(0, total, page):
            items = [
                {
                    "id": i,
                    "name": f"Item {i}",
                    "email": f"i{i}@example.com",
                    "team": f"team-{i % 50}",
                    "score": i % 1000,
                    "active": True,
                    "manager": {"email": f"m{i // 100}@example.com"},
                }
                for i in range(start, min(start + page, total))
                if not skip_every or i % skip_every
            ]
            counters.pages += 1
            counters.items_fetched += len(items)
            yield items

    return iter_pages


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--page", type=int, default=1000)
    ap.add_argument("--sink", choices=["catalog", "null"], default="catalog")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        catalog = await Catalog.open(Path(tmp) / "bench.db")
        sink = catalog.sink if args.sink == "catalog" else NullSink()
        print(f"{args.entities:,} items, pages of {args.page}, sink {args.sink}; RSS at start {rss_mb():.0f} MB")
        for label, skip in (("first sync (all new)", 0), ("second sync (unchanged)", 0), ("third (10% gone)", 10)):
            sync_module.iter_pages = fake_pages(args.entities, args.page, skip)  # type: ignore[assignment]
            start = time.perf_counter()
            r = await sync_mapping(None, "bench", MAPPING, PaginationSpec(), sink, catalog.state, owner="bench/bench")
            dt = time.perf_counter() - start
            print(
                f"{label:26s} {r.outcome:9s} {r.items_fetched / dt:>9,.0f} items/s  upserted {r.entities_upserted:>9,} "
                f"unchanged {r.entities_unchanged:>9,} deleted {r.entities_deleted:>7,}  peak RSS {rss_mb():.0f} MB"
            )
        await catalog.aclose()


if __name__ == "__main__":
    asyncio.run(main())
