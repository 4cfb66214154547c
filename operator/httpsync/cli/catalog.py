"""``httpsync catalog list``: what the embedded catalog holds."""

from __future__ import annotations

import argparse
import json
import sqlite3
from typing import Any

from httpsync.cli import CommandError
from httpsync.cli.common import EXIT_FAILED, EXIT_OK, add_catalog_arg, dump_json, print_table, run_async, shorten

FIELDS = ("identifier", "title", "blueprint", "properties", "relations", "team", "icon")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser("catalog", help="read the embedded catalog")
    actions = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    ls: argparse.ArgumentParser = actions.add_parser(
        "list", help="list entities, ordered by blueprint and identifier", description="List the catalog's entities."
    )
    add_catalog_arg(ls)
    ls.add_argument("--blueprint", metavar="B", help="only entities of this blueprint")
    ls.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    ls.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    return run_async(_list(args))


async def _list(args: argparse.Namespace) -> int:
    from httpsync.sinks.catalog import Catalog, default_catalog_path

    path = default_catalog_path(args.catalog)
    try:
        catalog = await Catalog.open(path, create=False)
    except FileNotFoundError:
        message = f"no catalog at {path} (run `httpsync sync` first, or give --catalog)"
        raise CommandError(message, EXIT_FAILED) from None
    except (sqlite3.Error, OSError) as e:
        raise CommandError(f"cannot read the catalog {path}: {e} (is it an httpsync catalog?)", EXIT_FAILED) from None
    try:
        entities = await catalog.sink.list_entities(args.blueprint)
    except sqlite3.Error as e:
        raise CommandError(f"cannot read the catalog {path}: {e} (is it an httpsync catalog?)", EXIT_FAILED) from None
    finally:
        await catalog.aclose()
    docs = [_doc(e) for e in entities]
    if args.output == "json":
        dump_json(docs)
    else:
        rows = [[d["blueprint"], d["identifier"], shorten(str(d["title"]), 40), shorten(_compact(d), 70)] for d in docs]
        print_table(["BLUEPRINT", "IDENTIFIER", "TITLE", "PROPERTIES/RELATIONS"], rows)
    return EXIT_OK


def _doc(entity: dict[str, Any]) -> dict[str, Any]:
    doc = {k: entity.get(k) for k in FIELDS}
    doc["properties"] = doc["properties"] or {}
    doc["relations"] = doc["relations"] or {}
    return doc


def _compact(d: dict[str, Any]) -> str:
    parts = {**d["properties"], **{f"->{k}": v for k, v in d["relations"].items()}}
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
