"""``httpsync sync``: sync every mapping of the manifests once, into each source's ``spec.sink``
(the embedded catalog when it has none), or into the sink ``--sink`` names.

A Port or webhook sink takes its credentials from the Secret manifests given with ``-f`` (as the
operator does from the cluster) or, when a Secret is not given, from the environment
(``HTTPSYNC_PORT_CLIENT_ID``/``HTTPSYNC_PORT_CLIENT_SECRET``, ``HTTPSYNC_WEBHOOK_SECRET``); with
``--sink port|webhook`` and no such ``spec.sink`` in a source, the whole sink comes from the
environment as for the operator's default sink (``HTTPSYNC_PORT_BASE_URL``, ``HTTPSYNC_WEBHOOK_URL``
...). What was pushed to a remote sink is remembered in ``--state`` (default ``$HTTPSYNC_STATE``, else
``./httpsync-state.db``); without it (a fresh CronJob pod) the Port sink rebuilds ownership from Port.

Exit status: 0 all endpoints succeeded, 1 any failed, 2 the manifests are invalid (unknown field,
invalid jq, a mapping whose source is not in the files).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from asyncio import Semaphore
from pathlib import Path
from typing import Any

from httpsync.api.models import HttpEndpointMapping, HttpSourceSpec, SinkSpec, SinkType
from httpsync.cli import CommandError
from httpsync.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
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
from httpsync.engine.url import display_url
from httpsync.errors import ConfigError, EngineError, SecretError
from httpsync.http.policy import add_policy_arguments, policy_from_args

STATE_ENV = "HTTPSYNC_STATE"
DEFAULT_STATE = "httpsync-state.db"
# Where a Secret a remote sink names is read from when its manifest is not given.
SECRET_ENV = {
    "clientId": "HTTPSYNC_PORT_CLIENT_ID",
    "clientSecret": "HTTPSYNC_PORT_CLIENT_SECRET",
    "secret": "HTTPSYNC_WEBHOOK_SECRET",
}


class SinkSecrets:
    """The Secret manifests, else the environment variable of the key (:data:`SECRET_ENV`)."""

    def __init__(self, manifests: SecretResolver) -> None:
        self._manifests = manifests

    async def get(self, name: str, key: str) -> str:
        try:
            return await self._manifests.get(name, key)
        except SecretError as e:
            env = SECRET_ENV.get(key)
            value = os.environ.get(env) if env else None
            if value:
                return value
            hint = f", or set {env}" if env else ""
            raise SecretError(f"{e.message}{hint}") from None


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sync",
        help="sync every mapping once into its source's sink (the embedded catalog by default)",
        description="Fetch every endpoint mapping of the manifests once and write the entities into the "
        "sink of its HttpSource (spec.sink: Port, a webhook, or the embedded SQLite catalog when unset), "
        "or into the sink --sink names. Unchanged entities are not written again; entities that vanished "
        "from the API are deleted after a fully successful fetch (within spec.deletionGuard). Sink "
        "credentials: the Secret manifests given with -f, else HTTPSYNC_PORT_CLIENT_ID / "
        "HTTPSYNC_PORT_CLIENT_SECRET / HTTPSYNC_WEBHOOK_SECRET.",
    )
    add_manifest_args(p)
    add_catalog_arg(p)
    p.add_argument(
        "--sink",
        choices=[t.value for t in SinkType],
        help="write every source's entities there: catalog, port (a source's spec.sink.port, else "
        "HTTPSYNC_PORT_BASE_URL / _CLIENT_ID / _CLIENT_SECRET) or webhook (spec.sink.webhook, else "
        "HTTPSYNC_WEBHOOK_URL / _SECRET); default: each source's spec.sink",
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        help=f"what was pushed to Port or a webhook (default: ${STATE_ENV}, else ./{DEFAULT_STATE})",
    )
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


def sink_of(source: HttpSourceSpec, override: str | None) -> SinkSpec | None:
    """The sink a source's entities go to: its ``spec.sink``, or ``--sink``; None: the default
    (the catalog, or with ``--sink port|webhook`` the sink the environment describes)."""
    if override is None:
        return source.sink
    if override == SinkType.catalog.value:
        return SinkSpec(type=SinkType.catalog)
    if source.sink is not None and source.sink.type.value == override:
        return source.sink
    return None


async def _sync(
    args: argparse.Namespace, manifests: Manifests, mappings: list[HttpEndpointMapping], mappers: dict[int, Any]
) -> int:
    from httpsync.engine.runner import SourceMapping, sync_source
    from httpsync.engine.sync import failed_result
    from httpsync.sinks.catalog import default_catalog_path
    from httpsync.sinks.factory import DEFAULT_PORT_BASE_URL, Sinks, SinkSettings

    path = default_catalog_path(args.catalog)
    state_path = args.state or os.environ.get(STATE_ENV) or os.path.join(".", DEFAULT_STATE)
    policy = policy_from_args(args)
    override: str | None = args.sink
    sources = [manifests.source_of(m).spec for m in mappings]
    needs_default = override in ("port", "webhook") and any(sink_of(s, override) is None for s in sources)
    settings = SinkSettings(
        catalog_path=Path(path),
        state_path=Path(state_path),
        default_sink=override if needs_default and override else "catalog",
        port_base_url=os.environ.get("HTTPSYNC_PORT_BASE_URL") or DEFAULT_PORT_BASE_URL,
        port_client_id=os.environ.get("HTTPSYNC_PORT_CLIENT_ID"),
        port_client_secret=os.environ.get("HTTPSYNC_PORT_CLIENT_SECRET"),
        webhook_url=os.environ.get("HTTPSYNC_WEBHOOK_URL"),
        webhook_secret=os.environ.get("HTTPSYNC_WEBHOOK_SECRET"),
        policy=policy,
    )
    targets: set[str] = set()
    async with demo_api(args.demo_api, args.demo_api_port):
        try:
            sinks = await Sinks.open(settings)
        except ConfigError as e:
            raise CommandError(f"{e.message} (--sink {override})", EXIT_INVALID) from None
        except Exception as e:
            raise CommandError(f"cannot open the catalog {path} or the state {state_path}: {e}", EXIT_FAILED) from None
        try:

            async def run(
                source: HttpSourceSpec, secrets: SecretResolver, group: list[HttpEndpointMapping], limit: Semaphore
            ) -> list[EndpointResult]:
                todo = [SourceMapping(m.metadata.name, owner_of(m), m.spec, mappers[id(m)]) for m in group]
                spec = sink_of(source, override)
                name = group[0].spec.source_ref.name
                try:
                    async with sinks.for_source(spec, SinkSecrets(secrets), name) as target:
                        targets.add(_describe(target.sink))
                        return await sync_source(
                            source, todo, secrets, target.sink, target.state, concurrency=limit,
                            check_url=policy.check,
                        )  # fmt: skip
                except EngineError as e:  # the sink cannot be built: a missing Secret, a bad URL
                    return [failed_result(m.metadata.name, m.spec.kind, e) for m in group]

            results = await for_each_source(manifests, mappings, run)
            total = await sinks.catalog.sink.count()
        finally:
            await sinks.aclose()
    if args.output == "json":
        json.dump([_json(r) for r in results], sys.stdout, indent=2)
        print()
    else:
        _print_results(results, path, total, targets)
    return EXIT_OK if all(r.succeeded for r in results) else EXIT_FAILED


def _json(result: EndpointResult) -> dict[str, Any]:
    """The result's ``-o json`` object, with why the sink rejected entities (samples)."""
    return {**result.to_json(), "sinkErrorSamples": list(result.sink_error_samples)}


def _describe(sink: Any) -> str:
    """Where a sink writes, for the summary line."""
    if sink.name == "port":
        return f"Port {sink.base_url}"
    if sink.name == "webhook":
        return f"webhook {display_url(sink.url)}"
    return "catalog"


def _print_results(results: list[EndpointResult], path: str, total: int, targets: set[str]) -> None:
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
            notes.append(f"{r.mapping}: the sink rejected {r.entities_failed} entities, e.g.:")
            notes += [f"    {s}" for s in r.sink_error_samples]
    if notes:
        print()
        print("\n".join(terminal_safe(n) for n in notes))
    failed = sum(not r.succeeded for r in results)
    print()
    where = [f"Catalog {path}: {total} entities." if t == "catalog" else f"Sent to {t}." for t in sorted(targets)]
    print(f"{len(results)} endpoints: {len(results) - failed} succeeded, {failed} failed. " + " ".join(where))
