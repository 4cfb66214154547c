"""``httpsync preview``: fetch and map without writing anything; show the entities and every
per-item error. Exit status: 0, 1 if a fetch failed, 2 if the manifests are invalid."""

from __future__ import annotations

import argparse
import json
import sys
from asyncio import Semaphore
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from httpsync.api.models import HttpEndpointMapping, HttpSourceSpec
from httpsync.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_demo_args,
    add_manifest_args,
    check_mappings,
    demo_api,
    dump_yaml,
    for_each_source,
    load,
    pagination_of,
    print_table,
    run_async,
    select_mappings,
    shorten,
    terminal_safe,
)
from httpsync.cli.manifests import Manifests
from httpsync.engine.types import SecretResolver
from httpsync.errors import EngineError
from httpsync.http.policy import add_policy_arguments, policy_from_args

if TYPE_CHECKING:
    from httpsync.engine.sync import PreviewResult


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "preview",
        help="fetch and map without writing; show entities and mapping errors",
        description="Fetch each mapping's endpoint until --limit entities are mapped, and show them with "
        "every per-item mapping error met on the way. Nothing is written.",
    )
    add_manifest_args(p)
    p.add_argument("--mapping", action="append", metavar="NAME", help="only this HttpEndpointMapping (repeatable)")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="entities to show per mapping (default 10)")
    p.add_argument("-o", "--output", choices=["yaml", "json", "table"], default="yaml", help="output format")
    add_policy_arguments(p)
    add_demo_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise SystemExit("httpsync preview: --limit must be at least 1")
    manifests = load(args.files)
    mappings = select_mappings(manifests, args.mapping)
    check_mappings(manifests, mappings)
    return run_async(_preview(args, manifests, mappings))


async def _preview(args: argparse.Namespace, manifests: Manifests, mappings: list[HttpEndpointMapping]) -> int:
    from httpsync.engine.runner import run_source
    from httpsync.engine.sync import PreviewResult, failed_result, preview_mapping

    policy = policy_from_args(args)

    async def work(client: Any, m: HttpEndpointMapping) -> PreviewResult:
        return await preview_mapping(client, m.metadata.name, m.spec, pagination_of(manifests, m), limit=args.limit)

    def failed(m: HttpEndpointMapping, e: EngineError) -> PreviewResult:
        return PreviewResult(failed_result(m.metadata.name, m.spec.kind, e))

    async def run(
        source: HttpSourceSpec, secrets: SecretResolver, group: list[HttpEndpointMapping], limit: Semaphore
    ) -> list[PreviewResult]:
        return await run_source(source, group, secrets, work, failed, concurrency=limit, check_url=policy.check)

    async with demo_api(args.demo_api, args.demo_api_port):
        results = await for_each_source(manifests, mappings, run)
    docs = [r.to_json() for r in results]
    if args.output == "json":
        json.dump(docs, sys.stdout, indent=2)
        print()
    elif args.output == "yaml":
        dump_yaml(docs)
    else:
        _print_tables(results)
    return EXIT_OK if all(r.result.succeeded for r in results) else EXIT_FAILED


def _print_tables(results: list[PreviewResult]) -> None:
    for n, p in enumerate(results):
        if n:
            print()
        r = p.result
        head = f"{r.mapping} ({r.kind}): {r.items_fetched} items fetched, {r.items_filtered} filtered"
        print(terminal_safe(head if r.succeeded else f"{head}; {r.outcome} ({r.reason}): {r.message}"))
        if p.entities:
            rows = [
                [e["blueprint"], e["identifier"], shorten(str(e.get("title")), 40), shorten(_compact(e), 70)]
                for e in p.entities
            ]
            print_table(["BLUEPRINT", "IDENTIFIER", "TITLE", "PROPERTIES/RELATIONS"], rows)
        for err in p.errors:
            print(f"  error: {terminal_safe(str(err))}")


def _compact(entity: Mapping[str, Any]) -> str:
    parts = {**entity.get("properties", {}), **{f"->{k}": v for k, v in entity.get("relations", {}).items()}}
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
