"""``httpsync preview``: fetch and map without writing anything; show the entities and every
per-item error. Exit status: 0, 1 if a fetch failed, 2 if the manifests are invalid.

A mapping workbench, like the jq playground of Port's web mapping editor:

- ``--item N`` shows the N-th raw item of the endpoint (after ``dataPath``, counted from 1) next to
  the entity it becomes, each field with its value or, under it, its own error (every field is
  evaluated on its own, so one failing field does not hide the others);
- ``--watch`` runs again each time one of the manifest files changes (their modification times are
  polled every ``--watch-interval`` seconds); an invalid edit is reported and the watch goes on;
- the table output lists the mapping errors under the field they belong to, with how many items
  each message hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from asyncio import Semaphore
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from httpsync.api.models import HttpEndpointMapping, HttpSourceSpec
from httpsync.cli import CommandError
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
from httpsync.cli.manifests import Manifests, manifest_files
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
    p.add_argument(
        "--item",
        type=int,
        metavar="N",
        help="show the N-th raw item (from 1, after dataPath) next to its entity, with each field's value or error",
    )
    p.add_argument("--watch", action="store_true", help="run again whenever a manifest file changes (Ctrl-C stops)")
    p.add_argument(
        "--watch-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often --watch looks at the files (default 1)",
    )
    add_policy_arguments(p)
    add_demo_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise SystemExit("httpsync preview: --limit must be at least 1")
    if args.item is not None and args.item < 1:
        raise CommandError("--item counts from 1", 2)
    if args.watch_interval <= 0:
        raise CommandError("--watch-interval must be more than 0", 2)
    if args.watch:
        return run_async(_watch(args))
    manifests = load(args.files)
    mappings = select_mappings(manifests, args.mapping)
    check_mappings(manifests, mappings)
    return run_async(_preview(args, manifests, mappings))


def _stamp(paths: list[str]) -> tuple[tuple[str, int, int], ...]:
    """What --watch compares: every manifest file with its modification time and size."""
    files, _ = manifest_files(paths)
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


async def _changed(paths: list[str], stamp: tuple[tuple[str, int, int], ...], interval: float) -> None:
    """Return once the files under ``paths`` differ from ``stamp`` (polled every ``interval`` s)."""
    while True:
        await asyncio.sleep(interval)
        if _stamp(paths) != stamp:
            return


async def _watch(args: argparse.Namespace) -> int:
    """Preview, then again after every change of the manifest files, until interrupted."""
    async with demo_api(args.demo_api, args.demo_api_port):
        runs = 0
        while True:
            stamp = _stamp(args.files)
            runs += 1
            print(f"--- preview {runs} ({time.strftime('%H:%M:%S')}) ---", flush=True)
            try:
                manifests = load(args.files)
                mappings = select_mappings(manifests, args.mapping)
                check_mappings(manifests, mappings)
                await _preview(args, manifests, mappings, serve_demo=False)
            except CommandError as e:
                for line in e.message.splitlines():
                    print(f"httpsync: {line}", file=sys.stderr, flush=True)
            print(f"--- watching {len(stamp)} files for changes (Ctrl-C stops) ---", flush=True)
            sys.stdout.flush()
            await _changed(args.files, stamp, args.watch_interval)


async def _preview(
    args: argparse.Namespace, manifests: Manifests, mappings: list[HttpEndpointMapping], serve_demo: bool = True
) -> int:
    from httpsync.engine.runner import run_source
    from httpsync.engine.sync import PreviewResult, failed_result, preview_mapping

    policy = policy_from_args(args)
    if args.item is not None:
        return await _preview_item(args, manifests, mappings, serve_demo, policy.check)

    async def work(client: Any, m: HttpEndpointMapping) -> PreviewResult:
        return await preview_mapping(client, m.metadata.name, m.spec, pagination_of(manifests, m), limit=args.limit)

    def failed(m: HttpEndpointMapping, e: EngineError) -> PreviewResult:
        return PreviewResult(failed_result(m.metadata.name, m.spec.kind, e))

    async def run(
        source: HttpSourceSpec, secrets: SecretResolver, group: list[HttpEndpointMapping], limit: Semaphore
    ) -> list[PreviewResult]:
        return await run_source(source, group, secrets, work, failed, concurrency=limit, check_url=policy.check)

    async with demo_api(args.demo_api and serve_demo, args.demo_api_port):
        results = await for_each_source(manifests, mappings, run)
    docs = [r.to_json() for r in results]
    if args.output == "json":
        json.dump(docs, sys.stdout, indent=2)
        print()
    elif args.output == "yaml":
        dump_yaml(docs)
    else:
        _print_tables(results)
    sys.stdout.flush()
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
        for line in _errors_by_field(p.errors):
            print(line)


def _field_of(error: str) -> tuple[str, str]:
    """(field, message) of a mapping error such as ``mappings.properties.email: Cannot index ...``."""
    head, sep, rest = error.partition(": ")
    if sep and (head.startswith(("mappings.", "selector.")) or head == "itemsToParse"):
        return head, rest
    words = error.split(" ", 1)
    if words[0].startswith(("mappings.", "selector.")) or words[0] == "itemsToParse":
        return words[0], error
    return "(item)", error


def _errors_by_field(errors: list[str]) -> list[str]:
    """The errors under the field they belong to, each distinct message once with its count."""
    grouped: dict[str, dict[str, int]] = {}
    for err in errors:
        name, message = _field_of(err)
        messages = grouped.setdefault(name, {})
        messages[message] = messages.get(message, 0) + 1
    lines = []
    for name, messages in grouped.items():
        total = sum(messages.values())
        lines.append(f"  {name}: {total} error{'s' if total != 1 else ''}")
        for message, n in messages.items():
            lines.append(f"    {terminal_safe(message)}" + (f" ({n} items)" if n > 1 else ""))
    return lines


def _compact(entity: Mapping[str, Any]) -> str:
    parts = {**entity.get("properties", {}), **{f"->{k}": v for k, v in entity.get("relations", {}).items()}}
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- --item: one raw item and its entity


def _field_value(expr: str, label: str, unit: Any, is_key: bool) -> dict[str, Any]:
    """``{"value": v}`` or ``{"error": message}`` of one mapping field on one item, as the mapper
    computes it (jq's first output, null when none; identifier and blueprint must be strings)."""
    from httpsync.engine.jqutil import compile_jq, jq_error_line
    from httpsync.engine.mapping import MappingError, check_key
    from httpsync.errors import InvalidJqError
    from httpsync.http.redact import redact

    try:
        program = compile_jq(expr, label)
        outputs = program.input_value(unit)
        try:
            value = outputs.first()
        except StopIteration:
            value = None
        if is_key:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = compile_jq("tostring", label).input_value(value).first()  # as the mapper does
            value = check_key(value, label)
        return {"value": value}
    except InvalidJqError as e:
        return {"error": redact(e.message)}
    except MappingError as e:
        return {"error": redact(str(e).removeprefix(f"{label} "))}
    except ValueError as e:
        return {"error": redact(jq_error_line(e))}


def _units_of(spec: Any, raw: Any) -> tuple[list[Any], str | None]:
    """The units mapped from one raw item: itself, or with itemsToParse one per element."""
    if not spec.items_to_parse:
        return [raw], None
    result = _field_value(spec.items_to_parse, "itemsToParse", raw, False)
    if "error" in result:
        return [], f"itemsToParse: {result['error']}"
    elements = result["value"]
    if not isinstance(elements, list):
        from httpsync.engine.mapping import describe

        return [], f"itemsToParse returned {describe(elements)}, not an array"
    if not isinstance(raw, dict):
        return [], "itemsToParse needs an object item"
    return [{**raw, "item": element} for element in elements], None


def _fields_of_spec(spec: Any) -> list[tuple[str, str, bool]]:
    m = spec.mappings
    out = [("identifier", m.identifier, True), ("blueprint", m.blueprint, True)]
    out += [(name, getattr(m, name), False) for name in ("title", "team", "icon") if getattr(m, name) is not None]
    out += [(f"properties.{k}", v, False) for k, v in m.properties.items()]
    out += [(f"relations.{k}", v, False) for k, v in m.relations.items()]
    return out


def explain_item(spec: Any, raw: Any) -> dict[str, Any]:
    """What the mapping makes of one raw item: the entities (exactly as ``sync`` maps them) and,
    per unit, every field's value or error, each evaluated on its own."""
    from httpsync.engine.mapping import Mapper

    page = Mapper.from_spec(spec).map_page([raw])
    units, problem = _units_of(spec, raw)
    explained = []
    for unit in units:
        query = _field_value(spec.selector.query, "selector.query", unit, False)
        fields = {name: _field_value(expr, f"mappings.{name}", unit, key) for name, expr, key in _fields_of_spec(spec)}
        explained.append({"query": query, "fields": fields})
    doc: dict[str, Any] = {"entities": page.entities, "filtered": page.filtered, "errors": page.errors}
    if problem:
        doc["itemsToParseError"] = problem
    doc["units"] = explained
    return doc


async def _preview_item(
    args: argparse.Namespace,
    manifests: Manifests,
    mappings: list[HttpEndpointMapping],
    serve_demo: bool,
    check_url: Callable[[str], None],
) -> int:
    import contextlib

    from httpsync.engine.fetch import FetchCounters, iter_pages
    from httpsync.engine.runner import run_source
    from httpsync.http.redact import redact

    wanted: int = args.item

    async def work(client: Any, m: HttpEndpointMapping) -> dict[str, Any]:
        doc: dict[str, Any] = {"mapping": m.metadata.name, "kind": m.spec.kind, "item": wanted}
        counters = FetchCounters()
        seen = 0
        raw: Any = None
        found = False
        # The raw items, decoded here (with the worker pool the pages would come back mapped); the
        # mapping of the one item shown runs here too, field by field (explain_item).
        client.pool = None
        try:
            pages = iter_pages(client, m.spec, pagination_of(manifests, m), counters)
            async with contextlib.aclosing(pages) as it:
                async for items in it:
                    if seen + len(items) >= wanted:
                        raw, found = items[wanted - seen - 1], True
                        break
                    seen += len(items)
        except EngineError as e:
            return {**doc, "outcome": "Failed", "reason": e.reason, "message": redact(e.message)}
        if not found:
            return {**doc, "outcome": "Failed", "reason": "NoSuchItem", "message": f"the endpoint has {seen} items"}
        return {**doc, "outcome": "Succeeded", "raw": raw, **explain_item(m.spec, raw)}

    def failed(m: HttpEndpointMapping, e: EngineError) -> dict[str, Any]:
        return {"mapping": m.metadata.name, "kind": m.spec.kind, "item": wanted, "outcome": "Failed",
                "reason": e.reason, "message": redact(e.message)}  # fmt: skip

    async def run(
        source: HttpSourceSpec, secrets: SecretResolver, group: list[HttpEndpointMapping], limit: Semaphore
    ) -> list[dict[str, Any]]:
        return await run_source(source, group, secrets, work, failed, concurrency=limit, check_url=check_url)

    async with demo_api(args.demo_api and serve_demo, args.demo_api_port):
        docs = await for_each_source(manifests, mappings, run)
    if args.output == "json":
        json.dump(docs, sys.stdout, indent=2)
        print()
    elif args.output == "yaml":
        dump_yaml(docs)
    else:
        for n, doc in enumerate(docs):
            if n:
                print()
            _print_item(doc)
    sys.stdout.flush()
    return EXIT_OK if all(d["outcome"] == "Succeeded" for d in docs) else EXIT_FAILED


RAW_WIDTH = 60


def _entity_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if doc.get("itemsToParseError"):
        lines.append(f"itemsToParse: error: {doc['itemsToParseError']}")
    units = doc["units"]
    for i, unit in enumerate(units):
        if len(units) > 1:
            lines.append(f"[element {i + 1} of itemsToParse]")
        query = unit["query"]
        if "error" in query:
            lines += ["selector.query:", f"  error: {query['error']}"]
        elif query["value"] is not True:
            shown = json.dumps(query["value"])
            lines.append(f"selector.query: {shown} ({'filtered out' if query['value'] is False else 'not a boolean'})")
        for name, result in unit["fields"].items():
            if "error" in result:
                lines += [f"{name}:", f"  error: {result['error']}"]
            else:
                lines.append(f"{name}: {shorten(json.dumps(result['value'], ensure_ascii=False), 70)}")
    if not units and not doc.get("itemsToParseError"):
        lines.append("(itemsToParse gave no elements)")
    return lines


def _print_item(doc: dict[str, Any]) -> None:
    head = f"{doc['mapping']} ({doc['kind']}): item {doc['item']}"
    if doc["outcome"] != "Succeeded":
        print(f"{head}; {doc['outcome']} ({doc['reason']}): {doc['message']}")
        return
    entities = len(doc["entities"])
    print(f"{head} -> {entities} entit{'y' if entities == 1 else 'ies'}" + (", filtered" if doc["filtered"] else ""))
    left = json.dumps(doc["raw"], indent=2, ensure_ascii=False).splitlines()
    left = [shorten(line, RAW_WIDTH) for line in left]
    right = _entity_lines(doc)
    width = max([len("RAW ITEM"), *map(len, left)])
    print(f"{'RAW ITEM'.ljust(width)}  | ENTITY")
    for n in range(max(len(left), len(right))):
        a = left[n] if n < len(left) else ""
        b = right[n] if n < len(right) else ""
        print(f"{a.ljust(width)}  | {b}".rstrip())
