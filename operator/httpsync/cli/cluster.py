"""``httpsync cluster up|down|env|build``: a real kube-apiserver + etcd on loopback (no Docker)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from httpsync.devcluster.cluster import DEFAULT_STATE

    p: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="start or stop a local control plane (etcd + kube-apiserver built from Go modules)",
        description="A local Kubernetes control plane on loopback, for trying the operator without a cluster.",
    )
    p.add_argument("--state", default=str(DEFAULT_STATE), help=f"state folder (default {DEFAULT_STATE})")
    p.add_argument("action", choices=["build", "up", "down", "env"])
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from httpsync.devcluster.cluster import main

    return main(["--state", args.state, args.action])
