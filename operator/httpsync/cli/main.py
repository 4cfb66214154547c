"""The ``httpsync`` command line.

The parser is assembled from a registry of subcommand modules (:data:`COMMAND_MODULES`); each
module's ``register(subparsers)`` adds its subcommand and a ``handler(args) -> int``. To add a
subcommand, write ``httpsync/cli/<name>.py`` and list it here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from httpsync.cli import CommandError
from httpsync.http.redact import RedactingFormatter, redact

COMMAND_MODULES: list[str] = [
    "httpsync.cli.sync",
    "httpsync.cli.preview",
    "httpsync.cli.catalog",
    "httpsync.cli.demo",
    "httpsync.cli.run",
    "httpsync.cli.cluster",
]



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="httpsync",
        description="Turn any HTTP/REST API into software-catalog entities.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug), to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else logging.WARNING)
    if verbosity < 2:
        logging.getLogger("httpx").setLevel(logging.INFO if verbosity == 1 else logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from httpsync.cli.common import configure_workers

    configure_workers(args)
    try:
        return int(args.handler(args))
    except CommandError as e:
        for line in e.message.splitlines():
            print(f"httpsync: {redact(line)}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("httpsync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `httpsync ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
