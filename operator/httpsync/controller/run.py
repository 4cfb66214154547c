"""``httpsync run``: the operator process (kopf), standalone; with ``--leader-elect``, one of several
replicas of which the holder of a Lease operates (controller/leader.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import kopf
from kubernetes_asyncio import client

from httpsync.api.models import parse_duration
from httpsync.controller import sharding
from httpsync.controller.config import OperatorConfig
from httpsync.http.redact import RedactingFormatter

log = logging.getLogger("httpsync.controller")


def _positive_duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return seconds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch this namespace (repeatable; default: HTTPSYNC_NAMESPACES, else all namespaces)",
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces (the default)")
    p.add_argument("--catalog", type=Path, default=None, help="embedded catalog file of the default sink")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("HTTPSYNC_METRICS_PORT", "8080")),
        help="Prometheus metrics port (0: off)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=int(os.environ.get("HTTPSYNC_HEALTH_PORT", "8081")),
        help="liveness endpoint port, /healthz (0: off)",
    )
    p.add_argument(
        "--min-interval",
        type=_positive_duration,
        default=os.environ.get("HTTPSYNC_MIN_INTERVAL", "30s"),
        metavar="DURATION",
        help="sync no source more often than this, whatever its spec.interval (default: HTTPSYNC_MIN_INTERVAL, "
        "else 30s, the CRD's minimum)",
    )
    p.add_argument(
        "--max-concurrent-syncs",
        type=int,
        default=None,
        metavar="N",
        help="source syncs at once across the operator; due sources queue for a slot (default: "
        "HTTPSYNC_MAX_CONCURRENT_SYNCS, else 4 per CPU)",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        default=None,
        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease syncs, the "
        "others stand by and take over when it stops renewing (default: HTTPSYNC_LEADER_ELECT)",
    )
    p.add_argument(
        "--leader-election-namespace",
        default=None,
        metavar="NAMESPACE",
        help="namespace of the Lease (default: HTTPSYNC_LEADER_ELECTION_NAMESPACE, POD_NAMESPACE, else default)",
    )
    p.add_argument(
        "--leader-election-id",
        default=None,
        metavar="NAME",
        help="name of the Lease, suffixed -SHARD with --shard (default: HTTPSYNC_LEADER_ELECTION_ID, else httpsync)",
    )
    p.add_argument(
        "--lease-duration",
        type=_positive_duration,
        default="15s",
        metavar="DURATION",
        help="a standby takes over this long after the leader last renewed (renewal every 2/15 of it; the "
        "leader stops if it cannot renew for 2/3 of it)",
    )
    p.add_argument(
        "--api-timeout",
        type=_positive_duration,
        default=os.environ.get("HTTPSYNC_API_TIMEOUT", "30s"),
        metavar="DURATION",
        help="give up on a Kubernetes API request after this; the step is retried with backoff (default: "
        "HTTPSYNC_API_TIMEOUT, else 30s)",
    )
    p.add_argument(
        "--allow-destination",
        action="append",
        default=None,
        metavar="HOST|CIDR",
        help="only these API hosts/networks may be synced (repeatable)",
    )
    p.add_argument(
        "--deny-destination",
        action="append",
        default=None,
        metavar="HOST|CIDR",
        help="replace the default deny list (cloud metadata addresses)",
    )
    sharding.add_argument(p)


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    cfg = OperatorConfig()
    env_ns = [n for n in os.environ.get("HTTPSYNC_NAMESPACES", "").replace(",", " ").split() if n]
    cfg.namespaces = [] if args.all_namespaces else (args.namespace or env_ns)
    if args.catalog is not None:
        cfg.catalog_path = args.catalog
    cfg.metrics_port = args.metrics_port or None
    cfg.health_port = args.health_port or None
    cfg.min_interval_seconds = args.min_interval
    cfg.api_timeout_seconds = args.api_timeout
    if args.max_concurrent_syncs is not None:
        if args.max_concurrent_syncs < 1:
            raise SystemExit("httpsync run: --max-concurrent-syncs must be at least 1")
        cfg.max_concurrent_syncs = args.max_concurrent_syncs
    if args.leader_elect:
        cfg.leader_elect = True
    if args.leader_election_namespace:
        cfg.leader_election_namespace = args.leader_election_namespace
    if args.leader_election_id:
        cfg.leader_election_id = args.leader_election_id
    cfg.lease_duration_seconds = args.lease_duration
    if args.allow_destination is not None:
        cfg.destination_allow = args.allow_destination
    if args.deny_destination is not None:
        cfg.destination_deny = args.deny_destination
    cfg.shard = args.shard
    return cfg


async def operate(cfg: OperatorConfig, stop_flag: asyncio.Event | None = None) -> None:
    from httpsync.controller import handlers  # noqa: F401  (registers the handlers)
    from httpsync.controller.metrics import serve

    if cfg.metrics_port:
        serve(cfg.metrics_port)
    liveness = f"http://0.0.0.0:{cfg.health_port}/healthz" if cfg.health_port else None
    await kopf.operator(
        standalone=True,
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=cfg, service=None),
        stop_flag=stop_flag,
    )


async def operate_as_leader(cfg: OperatorConfig, stop: asyncio.Event) -> None:
    """Stand by until this replica holds the Lease, then operate while renewing it. Losing it ends the
    process at once (exit 1, the pod restarts as a standby): nothing may sync after another replica
    could have taken over."""
    from httpsync.controller.kube import load_config
    from httpsync.controller.leader import LeaderElector, LeaseSettings, default_identity, serve_standby_health

    api_client = await load_config()
    # One Lease per shard: replicas of shard a never wait on those of shard b.
    lease = f"{cfg.leader_election_id}-{cfg.shard}" if cfg.shard else cfg.leader_election_id
    settings = LeaseSettings.for_duration(
        lease, cfg.leader_election_namespace, default_identity(), cfg.lease_duration_seconds
    )
    elector = LeaderElector(client.CoordinationV1Api(api_client), settings)
    health = await serve_standby_health(cfg.health_port) if cfg.health_port else None
    try:
        leading = await elector.acquire(stop)
    finally:
        if health is not None:
            health.close()
            await health.wait_closed()
    if not leading:
        await api_client.close()
        return

    def lost(why: str) -> None:
        log.error("leadership lost, stopping now: %s", why)
        logging.shutdown()
        os._exit(1)

    keeper = asyncio.create_task(elector.keep(lost))
    try:
        await operate(cfg, stop)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await elector.release()
        await api_client.close()


def setup_logging(*, debug: bool = False) -> None:
    """INFO to stderr, every line through the secret redactor (kopf logs objects and errors)."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # kopf logs every event handler's success at INFO: keep its warnings, not that chatter.
    for noisy in ("kubernetes_asyncio", "httpx", "httpcore", "aiohttp.access", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(args: argparse.Namespace) -> int:
    setup_logging(debug=getattr(args, "verbose", 0) > 1)
    cfg = config_from_args(args)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if not cfg.leader_elect:
            await operate(cfg, stop)
            return
        await operate_as_leader(cfg, stop)

    asyncio.run(_main())
    return 0
