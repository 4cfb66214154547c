"""What the local commands share: reading and checking manifests, the demo API, running the mappings
source by source, and plain-text tables."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TextIO, TypeVar

from httpsync.api.models import HttpEndpointMapping, HttpSourceSpec, PaginationSpec
from httpsync.cli import CommandError
from httpsync.cli.manifests import ManifestError, Manifests, load_manifests, namespace_of
from httpsync.engine.types import SecretResolver
from httpsync.errors import EngineError

R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
MAPPING_CONCURRENCY = 8


# --------------------------------------------------------------------------- arguments


def add_manifest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="PATH",
        help="manifest file or directory (.yaml, .yml, .json); repeatable",
    )
    add_worker_args(parser)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _memory_mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MiB") from None
    if value != 0 and value < 256:
        raise argparse.ArgumentTypeError(f"{value} MiB is too little for a worker (256 at least, or 0: no limit)")
    return value


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--worker-memory``: the processes that decode and map pages."""
    parser.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes that decode and map pages (default: $HTTPSYNC_WORKERS, else the CPUs)",
    )
    parser.add_argument(
        "--worker-memory",
        type=_memory_mib,
        metavar="MIB",
        help="memory limit of each worker, MiB (default: $HTTPSYNC_WORKER_MEMORY_MB, else 1024; 0: none)",
    )


def configure_workers(args: argparse.Namespace) -> None:
    from httpsync.engine import workers

    workers.configure(getattr(args, "workers", None), getattr(args, "worker_memory", None))


def add_catalog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog", metavar="FILE", help="catalog file (default: $HTTPSYNC_CATALOG, else ./httpsync-catalog.db)"
    )


def add_demo_args(parser: argparse.ArgumentParser) -> None:
    from httpsync.demo import DEFAULT_PORT

    parser.add_argument(
        "--demo-api",
        action="store_true",
        help=f"serve the bundled demo API on 127.0.0.1 (port {DEFAULT_PORT}) while the command runs",
    )
    parser.add_argument("--demo-api-port", type=int, default=DEFAULT_PORT, metavar="PORT", help=argparse.SUPPRESS)


# --------------------------------------------------------------------------- manifests


def load(paths: Sequence[str]) -> Manifests:
    """The manifests under ``paths``; exit 2 listing every problem."""
    try:
        manifests = load_manifests(paths)
    except ManifestError as e:
        raise CommandError("\n".join(e.problems), EXIT_INVALID) from None
    for note in manifests.notes:
        print(f"httpsync: note: {note}", file=sys.stderr)
    return manifests


def select_mappings(manifests: Manifests, names: Sequence[str] | None) -> list[HttpEndpointMapping]:
    if not names:
        if not manifests.mappings:
            raise CommandError("no HttpEndpointMapping in the files given", EXIT_INVALID)
        return list(manifests.mappings)
    chosen = [m for m in manifests.mappings if m.metadata.name in names]
    missing = sorted(set(names) - {m.metadata.name for m in chosen})
    if missing:
        raise CommandError(f"no HttpEndpointMapping named {', '.join(missing)} in the files given", EXIT_INVALID)
    return chosen


def pagination_of(manifests: Manifests, mapping: HttpEndpointMapping) -> PaginationSpec:
    return mapping.spec.pagination or manifests.source_of(mapping).spec.pagination


def owner_of(mapping: HttpEndpointMapping) -> str:
    return f"{namespace_of(mapping)}/{mapping.metadata.name}"


def check_mappings(manifests: Manifests, mappings: Sequence[HttpEndpointMapping]) -> dict[int, Any]:
    """Compile every mapping's jq (mappings and fetch side) and its source's auth.custom jq now, and check
    the URLs of their sources (a baseUrl that cannot be parsed, a port out of range): exit 2 naming file,
    object and field.
    Returns the compiled mappers by ``id(mapping)``."""
    from httpsync.engine.auth import check_auth
    from httpsync.engine.fetch import FetchPlan
    from httpsync.engine.mapping import Mapper
    from httpsync.engine.url import join_url

    mappers: dict[int, Any] = {}
    problems: list[str] = []
    sources: set[int] = set()
    for m in mappings:
        source = manifests.source_of(m)
        if id(source) not in sources:
            sources.add(id(source))
            try:
                join_url(source.spec.base_url, "/")
            except EngineError as e:
                problems.append(f"{manifests.where(source)}: spec.{e.message}")
            try:
                check_auth(source.spec.auth)
            except EngineError as e:
                problems.append(f"{manifests.where(source)}: {e.message}")
        try:
            FetchPlan.compile(m.spec, pagination_of(manifests, m))
            mappers[id(m)] = Mapper.from_spec(m.spec)
        except EngineError as e:
            problems.append(f"{manifests.where(m)}: {e.message}")
    if problems:
        raise CommandError("\n".join(problems), EXIT_INVALID)
    return mappers


# --------------------------------------------------------------------------- running


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def demo_api(enabled: bool, port: int) -> AsyncIterator[None]:
    if not enabled:
        yield
        return
    from httpsync.demo.server import DemoApi

    api = DemoApi("127.0.0.1", port)
    try:
        await api.start()
    except OSError as e:
        raise CommandError(
            f"cannot serve the demo API on 127.0.0.1:{port}: {e.strerror or e} "
            "(if `httpsync demo-api` is already running, leave out --demo-api)",
            EXIT_FAILED,
        ) from None
    try:
        yield
    finally:
        await api.stop()


SourceRun = Callable[[HttpSourceSpec, SecretResolver, list[HttpEndpointMapping], asyncio.Semaphore], Awaitable[list[R]]]


async def for_each_source(manifests: Manifests, mappings: Sequence[HttpEndpointMapping], run: SourceRun[R]) -> list[R]:
    """``run(source spec, secrets, the source's mappings, limit)`` for each source of the mappings,
    sources concurrently, returning one result per mapping (the engine's per-source runner,
    :mod:`httpsync.engine.runner`, does the rest). ``limit`` is shared: at most MAPPING_CONCURRENCY
    mappings run at once across all sources. Results keep the mappings' order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, m in enumerate(mappings):
        groups.setdefault((namespace_of(m), m.spec.source_ref.name), []).append(i)
    limit = asyncio.Semaphore(MAPPING_CONCURRENCY)
    results: list[R | None] = [None] * len(mappings)

    async def source(key: tuple[str, str], indexes: list[int]) -> None:
        spec = manifests.sources[key].spec
        group = [mappings[i] for i in indexes]
        for i, result in zip(indexes, await run(spec, manifests.secrets_for(key[0]), group, limit), strict=True):
            results[i] = result

    await asyncio.gather(*(source(k, v) for k, v in groups.items()))
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------- output


# Characters a terminal acts on rather than shows: C0 controls (ESC starts ANSI sequences), DEL,
# C1 controls (0x9b is a one-byte CSI) and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NOT_C0 = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_NO_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character a terminal would act on (ANSI escapes, other controls, bidi
    overrides) written out as ``\\x1b``, ``\\u202e``...; ``newlines``: keep line breaks."""
    return (_CONTROL_NO_NEWLINE if newlines else _CONTROL).sub(_escape, text)


def dump_json(doc: Any, out: TextIO | None = None) -> None:
    """``doc`` as indented JSON, non-ASCII text kept but C1 controls and bidi overrides escaped
    (``json`` escapes only C0 controls)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    print(_NOT_C0.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text), file=out or sys.stdout)


def dump_yaml(doc: Any, out: TextIO | None = None) -> None:
    """``doc`` as YAML. PyYAML escapes the control characters; the bidi overrides it considers
    printable are escaped too (their strings are written double-quoted, where ``\\u202e`` means
    the same character)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = '"' if _NOT_C0.search(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    dumped = yaml.dump(doc, Dumper=Dumper, sort_keys=False, allow_unicode=True)
    (out or sys.stdout).write(_NOT_C0.sub(lambda m: f"\\u{ord(m.group(0)):04x}", dumped))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """A plain-text table; cells (API data) made terminal-safe."""
    out = out or sys.stdout
    cells = [[terminal_safe(str(c)) for c in headers]]
    cells += [["-" if c is None else terminal_safe(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
