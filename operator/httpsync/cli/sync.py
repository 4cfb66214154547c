"""``httpsync sync``: sync every mapping of the manifests once into the embedded catalog.

Exit status: 0 all endpoints succeeded, 1 any failed, 2 the manifests are invalid (unknown field,
invalid jq, a mapping whose source is not in the files).
"""

from __future__ import annotations

import argparse
import json
import sys
from asyncio import Semaphore
from typing import Any

from httpsync.api.models import HttpEndpointMapping, HttpSourceSpec
from httpsync.cli import CommandError
from httpsync.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_catalog_arg,
    add_demo_args,
    add_manifest_args,
    check_mappings,
    demo_api,
    for_each_source,
    load,
    owner_of,
    print_table,
    run_async,
    shorten,
    terminal_safe,
)
from httpsync.cli.manifests import Manifests
from httpsync.engine.types import EndpointResult, SecretResolver
from httpsync.http.policy import add_policy_arguments, policy_from_args


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sync",
        help="sync every mapping once into the embedded catalog",
        description="Fetch every endpoint mapping of the manifests once and write the entities into the "
        "embedded SQLite catalog. Unchanged entities are not written again; entities that vanished "
        "from the API are deleted after a fully successful fetch (within spec.deletionGuard).",
    )
    add_manifest_args(p)
    add_catalog_arg(p)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    add_policy_arguments(p)
    add_demo_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    manifests = load(args.files)
    mappings = list(manifests.mappings)
    if not mappings:
        raise CommandError("no HttpEndpointMapping in the files given", 2)
    mappers = check_mappings(manifests, mappings)
    return run_async(_sync(args, manifests, mappings, mappers))


async def _sync(
    args: argparse.Namespace, manifests: Manifests, mappings: list[HttpEndpointMapping], mappers: dict[int, Any]
) -> int:
    from httpsync.engine.runner import SourceMapping, sync_source
    from httpsync.sinks.catalog import Catalog, default_catalog_path

    path = default_catalog_path(args.catalog)
    policy = policy_from_args(args)
    async with demo_api(args.demo_api, args.demo_api_port):
        try:
            catalog = await Catalog.open(path)
        except Exception as e:
            raise CommandError(f"cannot open the catalog {path}: {e}", EXIT_FAILED) from None
        try:

            async def run(
                source: HttpSourceSpec, secrets: SecretResolver, group: list[HttpEndpointMapping], limit: Semaphore
            ) -> list[EndpointResult]:
                todo = [SourceMapping(m.metadata.name, owner_of(m), m.spec, mappers[id(m)]) for m in group]
                return await sync_source(
                    source, todo, secrets, catalog.sink, catalog.state, concurrency=limit, check_url=policy.check
                )

            results = await for_each_source(manifests, mappings, run)
            total = await catalog.sink.count()
        finally:
            await catalog.aclose()
    if args.output == "json":
        json.dump([r.to_json() for r in results], sys.stdout, indent=2)
        print()
    else:
        _print_results(results, path, total)
    return EXIT_OK if all(r.succeeded for r in results) else EXIT_FAILED


def _print_results(results: list[EndpointResult], path: str, total: int) -> None:
    headers = ["MAPPING", "KIND", "RESULT", "FETCHED", "FILTERED", "ENTITIES"]
    headers += ["UPSERTED", "UNCHANGED", "DELETED", "ERRORS", "SECONDS"]
    rows = [
        [
            r.mapping,
            shorten(r.kind, 48),
            r.outcome if r.reason is None else f"{r.outcome} ({r.reason})",
            r.items_fetched,
            r.items_filtered,
            r.entities,
            r.entities_upserted,
            r.entities_unchanged,
            r.entities_deleted,
            r.mapping_error_count + r.entities_failed,
            f"{r.duration_seconds:.2f}",
        ]
        for r in results
    ]
    print_table(headers, rows)
    notes = []
    for r in results:
        if not r.succeeded:
            notes.append(f"{r.mapping}: {r.message}")
        if r.deletion_blocked:
            notes.append(f"{r.mapping}: {r.deletion_blocked}")
        if r.mapping_error_count:
            notes.append(f"{r.mapping}: {r.mapping_error_count} items could not be mapped, e.g.:")
            notes += [f"    {s}" for s in r.mapping_error_samples]
        if r.entities_failed:
            notes.append(f"{r.mapping}: the catalog rejected {r.entities_failed} entities, e.g.:")
            notes += [f"    {s}" for s in r.sink_error_samples]
    if notes:
        print()
        print("\n".join(terminal_safe(n) for n in notes))
    failed = sum(not r.succeeded for r in results)
    print()
    print(
        f"{len(results)} endpoints: {len(results) - failed} succeeded, {failed} failed. "
        f"Catalog {path}: {total} entities."
    )
