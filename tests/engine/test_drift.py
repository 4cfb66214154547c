"""The pure parts of ownership and drift (httpsync.engine.drift): Port's merge comparison and the
blueprints known before mapping. End to end (a wiped state, entities changed by hand) in
tests/sinks_remote/test_cli_port.py."""

from __future__ import annotations

from typing import Any

import pytest

from httpsync.api.models import HttpEndpointMappingSpec
from httpsync.engine.drift import in_sync, static_blueprints


def mapped(**fields: Any) -> Any:
    base = {"identifier": "a", "blueprint": "svc", "title": "A", "team": None, "icon": None}
    return {**base, "properties": {"n": 1}, "relations": {"owner": "u1"}, **fields}


HELD = {"identifier": "a", "title": "A", "icon": "x", "properties": {"n": 1, "other": 2}, "relations": {"owner": "u1"}}


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        (mapped(), True),  # what Port holds beyond the mapping (icon, other) is not compared: merge
        (mapped(title="B"), False),
        (mapped(properties={"n": 2}), False),
        (mapped(properties={"new": None}), True),  # null and absent are the same in Port
        (mapped(properties={"new": 0}), False),
        (mapped(relations={"owner": "u2"}), False),
        (mapped(team="t"), False),
    ],
)
def test_in_sync_is_ports_merge(entity: Any, expected: bool) -> None:
    assert in_sync(entity, HELD) is expected


def spec(blueprint: str) -> HttpEndpointMappingSpec:
    return HttpEndpointMappingSpec.model_validate(
        {"sourceRef": {"name": "s"}, "kind": "/x", "mappings": {"identifier": ".id", "blueprint": blueprint}}
    )


def test_static_blueprints() -> None:
    assert static_blueprints(spec('"service"')) == ["service"]
    assert static_blueprints(spec(".kind")) == []
