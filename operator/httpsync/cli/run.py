"""``httpsync run``: the operator."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from httpsync.controller.run import add_arguments

    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the operator against the current kubeconfig (or in-cluster config)",
        description="Run the operator: one sync loop per HttpSource, status on every resource.",
    )
    add_arguments(p)
    from httpsync.cli.common import add_worker_args

    add_worker_args(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from httpsync.controller.run import main

    return main(args)
