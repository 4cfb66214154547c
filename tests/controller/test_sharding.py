"""Sharding (httpsync.controller.sharding): `httpsync run --shard NAME` syncs only the resources labelled
sharding.httpsync.io/key=NAME, the operator without --shard only those without the label. The command line and
kopf's watch settings here; on the real API server, operators of different shards side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
import pytest

from httpsync.api.models import GROUP, VERSION
from httpsync.cli.main import build_parser
from httpsync.controller import sharding
from httpsync.controller.objects import MAPPINGS, SOURCES
from httpsync.controller.run import config_from_args

# Unused here (F401): the fixture api.
from tests.controller.harness import (  # noqa: F401
    TOKEN,
    ItemsApi,
    Operator,
    annotate,
    api_fixture,
    apply,
    get,
    mapping,
    owned,
    ready,
    secret,
    source,
    users,
    wait_for,
)

LABEL = "sharding.httpsync.io/key"

# ---------------------------------------------------------------------------- command line and kopf settings


def _cfg(*argv: str) -> Any:
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_shard_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTPSYNC_SHARD", raising=False)
    assert _cfg().shard is None
    assert _cfg("--shard", "team-a").shard == "team-a"
    monkeypatch.setenv("HTTPSYNC_SHARD", "b")
    assert _cfg().shard == "b"
    assert _cfg("--shard", "c.1").shard == "c.1"  # the flag wins


@pytest.mark.parametrize("bad", ["", "-a", "a b", "a/b", "x" * 64, "é"])
def test_a_bad_shard_name_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", f"--shard={bad}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not a shard name" in err and LABEL in err and "Traceback" not in err


def _selectors(settings: kopf.OperatorSettings, plural: str, group: str = GROUP) -> list[str]:
    resource = kopf.Resource(group, VERSION, plural)
    return settings.watching.label_selectors.collect(resource)


@pytest.mark.parametrize(("shard", "selector"), [("a", f"{LABEL}=a"), (None, f"!{LABEL}")])
def test_the_api_server_filters_both_resources(shard: str | None, selector: str) -> None:
    settings = kopf.OperatorSettings()
    sharding.configure(settings, shard)
    assert _selectors(settings, SOURCES) == [selector]
    assert _selectors(settings, MAPPINGS) == [selector]
    assert _selectors(settings, "namespaces", group="") == []  # nothing else is filtered


# ---------------------------------------------------------------------------- on the real API server


@contextmanager
def running(op: Operator) -> Iterator[Operator]:
    op.start()
    try:
        yield op
    finally:
        op.stop()


def _labelled(doc: dict[str, Any], shard: str | None) -> dict[str, Any]:
    if shard:
        doc["metadata"]["labels"] = {LABEL: shard}
    return doc


def _untouched(obj: dict[str, Any]) -> bool:
    """No operator ever wrote to it: no status, no finalizer, none of kopf's annotations."""
    meta = obj["metadata"]
    return (
        not obj.get("status")
        and not meta.get("finalizers")
        and not [a for a in meta.get("annotations", {}) if a.startswith("httpsync.io/")]
    )


def _versions(kube: Any, ns: str, *names: str) -> dict[str, str]:
    """resourceVersion of each hsrc/NAME and hem/NAME asked for."""
    return {n: get(kube, ns, n)["metadata"]["resourceVersion"] for n in names}


def _objects(shard: str) -> tuple[str, str]:
    return f"hsrc/src-{shard}", f"hem/map-{shard}"


def _synced(kube: Any, ns: str, op: Operator, shard: str) -> None:
    src, hem = _objects(shard)
    wait_for(ready(kube, ns, hem), f"{hem} Ready", operator=op)
    wait_for(ready(kube, ns, src), f"{src} Ready", operator=op)


def owned_ids(ns: str, shard: str) -> list[str]:
    return [f"{ns}-{shard}-{i}" for i in range(3)]


def _on_demand(kube: Any, ns: str, op: Operator, shard: str, value: str) -> None:
    src, _ = _objects(shard)
    annotate(kube, ns, src, value)
    wait_for(
        lambda: get(kube, ns, src)["status"].get("lastHandledReconcileAt") == value,
        f"the on-demand sync of {src}", operator=op,
    )  # fmt: skip


@pytest.mark.cluster
def test_each_shard_syncs_only_its_own_resources(
    kube: Any, api: ItemsApi, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ns = kube.new_namespace("shard")
    api.token = TOKEN
    docs: list[dict[str, Any]] = [secret("api-creds", token=TOKEN)]
    for shard in ("a", "b", "none"):
        api.set_items(f"/{ns}/{shard}", users(f"{ns}-{shard}", 3))
        label = None if shard == "none" else shard
        docs += [
            _labelled(source(f"src-{shard}", api.url), label),
            _labelled(mapping(f"map-{shard}", f"src-{shard}", f"/{ns}/{shard}"), label),
        ]
    # A mapping of shard b whose source is in shard a: to b, that source does not exist; a never sees it.
    docs.append(_labelled(mapping("map-b-of-a", "src-a", f"/{ns}/a"), "b"))
    apply(kube, ns, *docs)
    shard_a = Operator(kube, tmp_path_factory.mktemp("shard-a"), args=("--shard", "a"))
    shard_b = Operator(kube, tmp_path_factory.mktemp("shard-b"), args=("--shard=b",))
    unsharded = Operator(kube, tmp_path_factory.mktemp("unsharded"))
    mine = {"a": owned_ids(ns, "a"), "b": owned_ids(ns, "b"), "none": owned_ids(ns, "none")}

    # Each shard alone first: it syncs its own objects and writes nothing to the others' (nor the unlabelled ones).
    with running(shard_b):
        _synced(kube, ns, shard_b, "b")
        orphan = ready(kube, ns, "hem/map-b-of-a", status="False", reason="SourceNotFound")
        wait_for(orphan, "the cross-shard mapping SourceNotFound", operator=shard_b)
        for name in (*_objects("a"), *_objects("none")):
            assert _untouched(get(kube, ns, name)), f"shard b wrote to {name}"
    idle_b = _versions(kube, ns, *_objects("b"), "hem/map-b-of-a")
    with running(shard_a):
        _synced(kube, ns, shard_a, "a")
        _on_demand(kube, ns, shard_a, "a", "2026-01-01T00:00:00Z")
        assert {m["name"] for m in get(kube, ns, "hsrc/src-a")["status"]["mappings"]} == {"map-a"}
        assert _versions(kube, ns, *idle_b) == idle_b, "shard a wrote to shard b's objects"
        assert all(_untouched(get(kube, ns, name)) for name in _objects("none"))

        # Both at once: each serves its own on-demand syncs, into its own catalog.
        with running(shard_b):
            _on_demand(kube, ns, shard_b, "b", "2026-01-02T00:00:00Z")
            _on_demand(kube, ns, shard_a, "a", "2026-01-03T00:00:00Z")
            assert sorted(owned(shard_a, ns)) == mine["a"]
            assert sorted(owned(shard_b, ns)) == mine["b"]
            assert all(_untouched(get(kube, ns, name)) for name in _objects("none"))
    assert api.requests[f"/{ns}/none"] == 0

    # The operator without a shard takes the unlabelled ones, and leaves both shards' objects alone.
    idle = _versions(kube, ns, *_objects("a"), *_objects("b"), "hem/map-b-of-a")
    with running(unsharded):
        _synced(kube, ns, unsharded, "none")
        _on_demand(kube, ns, unsharded, "none", "2026-01-04T00:00:00Z")
        assert sorted(owned(unsharded, ns)) == mine["none"]
        assert _versions(kube, ns, *idle) == idle, "the unsharded operator wrote to a shard's objects"
