"""``httpsync demo-api``: serve the bundled demo API (the backend of examples/port-overview/)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from httpsync.cli import CommandError
from httpsync.cli.common import EXIT_FAILED, EXIT_OK


def register(subparsers: Any) -> None:
    from httpsync.demo import DEFAULT_PORT

    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo-api",
        help="serve the demo API of examples/port-overview/",
        description="Serve the demo API (users, projects, tickets and their comments, bearer auth) until interrupted.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from httpsync.demo.server import serve

    def ready(url: str) -> None:
        print(f"Demo API on {url} (bearer token in examples/port-overview/secret.yaml); Ctrl-C stops it", flush=True)

    try:
        asyncio.run(serve(args.host, args.port, ready=ready))
    except OSError as e:
        message = f"cannot serve the demo API on {args.host}:{args.port}: {e.strerror or e}"
        raise CommandError(message, EXIT_FAILED) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK
