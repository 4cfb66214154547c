"""Sharding across operator replicas, by Flux's convention: an HttpSource or HttpEndpointMapping labelled
``sharding.httpsync.io/key: NAME`` belongs to the operator run with ``--shard NAME``; the operator run without
``--shard`` takes the resources without that label. Each operator sees only its own resources: the filter is a
label selector on the API server's list and watch (kopf's ``settings.watching.label_selectors``), so the others'
objects never reach it (no handler, no index entry, no finalizer, no status patch, no memory).

A source and its mappings must carry the same label: an operator syncs the mappings of its shard that refer to a
source of its shard; to the operator of a mapping whose source is in another shard, that source does not exist.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from httpsync.api.models import GROUP
from httpsync.controller.objects import MAPPINGS, SOURCES

SHARD_LABEL = "sharding.httpsync.io/key"
# A Kubernetes label value, not empty: 63 characters at most, alphanumerics at both ends, -_. inside.
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")


def shard_name(text: str) -> str:
    """``--shard``'s argument: a label value (argparse reports the ``ValueError`` as a usage error)."""
    if not _LABEL_VALUE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shard name: the value of the label {SHARD_LABEL}, 1-63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return text


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard",
        type=shard_name,
        default=os.environ.get("HTTPSYNC_SHARD") or None,
        metavar="NAME",
        help=f"watch only the HttpSources and HttpEndpointMappings labelled {SHARD_LABEL}=NAME (default: "
        "HTTPSYNC_SHARD; without a shard: only those without that label)",
    )


def label_selector(shard: str | None) -> str:
    """The label selector of the resources of ``shard`` (None: the operator without a shard)."""
    return f"{SHARD_LABEL}={shard}" if shard else f"!{SHARD_LABEL}"


def configure(settings: Any, shard: str | None) -> None:
    """Point kopf's list and watch of both resources at ``shard`` (``settings``: kopf.OperatorSettings, at startup)."""
    for plural in (SOURCES, MAPPINGS):
        settings.watching.label_selectors[GROUP, plural] = label_selector(shard)
