"""dataPath and pagination paths walked in Python (jqfast) give exactly what jq gives: values, errors
and error messages, on many bodies, including the ones jq would change or refuse."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from httpsync.engine import jqfast, jsoncodec
from httpsync.engine.fetch import _NOT_WALKED, DataPath
from httpsync.engine.pagination import PaginationPlan, _Path
from httpsync.errors import DataPathError, PaginationError
from tests.testapi.fixtures import pagination_spec

DATA_PATHS = [
    ".items",
    "items",
    ".data",
    "data",
    ".meta.list",
    "meta.list",
    ".data[-1].tags",
    ".data[0].tags",
    ".data[9].tags",
    ".a.b.c",
    ".items[0]",
    '.["weird key"]',
    '."weird key"',
    ".total",
    ".meta",
    "@odata.value",
    '.["@odata.value"]',
    ".nested.deep.items",
]
VALUE_PATHS = [
    ".total",
    "total",
    ".meta.next",
    "meta.next",
    ".meta.has_more",
    ".meta.list",
    ".data[-1].id",
    ".data[0].id",
    ".data[-9].id",
    ".data[9].id",
    ".missing",
    ".missing.deeper",
    '.["@odata.nextLink"]',
    "@odata.nextLink",
    ".items[-1]",
    ".items",
    ".score",
    ".big",
    ".odd",
]

FIXED_BODIES: list[Any] = [
    {"items": [{"id": 1}, {"id": 2}], "total": 2, "meta": {"next": "abc", "has_more": True, "list": [1, 2]}},
    {"items": [], "total": 0, "meta": {"next": None, "has_more": False}},
    {"items": {"a": 1}},  # an object where the array should be
    {"items": "text", "total": "12", "meta": "not an object"},
    {"items": None, "total": None, "meta": None},
    {"items": 3, "total": 3.0, "meta": [1, 2]},
    {"items": True, "meta": {"next": 7.5, "has_more": 1}},
    {"data": [{"id": 1, "tags": ["a"]}, {"id": 2.0, "tags": ["b", "c"]}], "meta": {"list": []}},
    {"data": [], "meta": {"list": {"x": 1}}},
    {"data": "abc"},
    {"data": [1, "two", None, [3]]},
    {"weird key": [1], "@odata.value": [{"x": 1}], "@odata.nextLink": "https://x/?page=2"},
    {"a": {"b": {"c": [0.5, -0.0, 1e300, 1e-7]}}},
    {"a": {"b": 5}},
    {"a": [1]},
    {"nested": {"deep": {"items": [{"é": "ünïcødé", "emoji": "😀"}]}}},
    {"items": [{"id": "😀"}], "total": "😀"},
    [1, 2, 3],
    [{"items": [1]}],
    [],
    "a string body",
    42,
    1.5,
    None,
    True,
    {},
    # jq would change these or refuse them: the fast path must leave them to jq.
    {"items": [{"id": 1, "name": "lone \ud800 surrogate"}], "total": 1},
    {"items": [1], "total": 1, "note": "\udfff"},
    {"items": [1], "total": 1, "\ud83d": "key with a lone surrogate"},
    {"items": [{"score": float("nan")}], "total": float("nan")},
    {"items": [{"score": float("inf")}], "total": float("-inf"), "meta": {"next": float("inf")}},
    {"items": [{"id": 2**53 + 1}], "total": 2**53 + 1, "big": 2**70},
    {"items": [{"id": -(2**60) - 1}], "total": 2**53, "big": -(2**53)},
    {"items": [{"id": 10**30}], "big": 123456789012345678901234567890},
    {"items": [1.0, 2.0, -0.0], "total": 3.0, "score": 1e20, "odd": 2.5},
]


def _random_scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randint(-1000, 1000),
            rng.randint(-(2**62), 2**62),
            rng.choice([2**53, 2**53 + 1, -(2**53), 2**64]),
            rng.uniform(-1e6, 1e6),
            float(rng.randint(-100, 100)),
            rng.choice([float("nan"), float("inf"), 1e308, 5e-324]),
            rng.choice(["", "abc", "ünï", "😀", "a\ud800b", "\udc00", "next?page=2"]),
        ]
    )


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return _random_scalar(rng)
    if roll < 0.7:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    keys = ["items", "data", "meta", "total", "next", "has_more", "list", "id", "tags", "x", "é", "\ud800"]
    return {rng.choice(keys): _random_value(rng, depth - 1) for _ in range(rng.randint(0, 5))}


def _random_body(rng: random.Random) -> Any:
    body: dict[str, Any] = {}
    for key in ("items", "data", "meta", "total", "big", "score"):
        if rng.random() < 0.7:
            body[key] = _random_value(rng, 3)
    if rng.random() < 0.5:
        body["data"] = [{"id": _random_scalar(rng), "tags": _random_value(rng, 2)} for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        body["meta"] = {"next": _random_scalar(rng), "has_more": _random_scalar(rng), "list": _random_value(rng, 2)}
    return body


BODIES = FIXED_BODIES + [_random_body(random.Random(seed)) for seed in range(300)]


def _strict(value: Any) -> Any:
    """``value`` with its types spelled out (``1`` and ``1.0`` differ; nan equals nan)."""
    if isinstance(value, dict):
        return {"dict": [[k, _strict(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def _outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", call(*args)
    except Exception as e:  # compared: the class and the whole message
        return type(e).__name__, str(e)


def _jq_only(compiled: Any) -> Any:
    return dataclasses.replace(compiled, steps=None)


@pytest.mark.parametrize("expr", DATA_PATHS)
def test_data_path_fast_path_equals_jq(expr: str) -> None:
    fast = DataPath.compile(expr, "selector.dataPath")
    assert fast.steps is not None, "a plain path takes the fast path"
    slow = _jq_only(fast)
    for body in BODIES:
        if jsoncodec.has_lone_surrogate(body):
            continue  # jq refuses the whole body, the plain path walks it (tests/engine/test_integrity.py)
        where = "GET http://api/items"
        got, want = _outcome(fast.extract, body, where), _outcome(slow.extract, body, where)
        # Equal values (jq turns 2.0 into 2, equal in Python; the mapper normalizes item values anyway).
        assert got == want, f"{expr} on {body!r}"
        if got[0] == "value":
            assert json.dumps(got[1]) == json.dumps(want[1]) or jqfast.normalize(got[1]) == want[1]


@pytest.mark.parametrize("expr", VALUE_PATHS)
def test_pagination_fast_path_equals_jq(expr: str) -> None:
    plan = PaginationPlan.compile(pagination_spec(type="cursor", cursorPath=expr, totalPath=expr))
    fast = plan.cursor
    assert isinstance(fast, _Path) and fast.steps is not None
    slow = _jq_only(fast)
    paginator = plan.start("http://api/items")
    for body in BODIES:
        if jsoncodec.has_lone_surrogate(body):
            continue  # jq refuses the whole body, the plain path walks it (tests/engine/test_integrity.py)
        got, want = _outcome(paginator._value, fast, body), _outcome(paginator._value, slow, body)
        assert got[0] == want[0], f"{expr} on {body!r}: {got} != {want}"
        if got[0] == "value":
            assert _strict(got[1]) == _strict(want[1]), f"{expr} on {body!r}"  # same types, like jq's
        else:
            assert got == want


def test_plain_bodies_skip_jq() -> None:
    """The bodies an API usually sends never reach jq."""
    body = {"items": [{"id": i, "score": i * 1.5, "name": f"ünï {i}", "tags": ["a"]} for i in range(5)], "total": 5}
    data_path = DataPath.compile(".items", "selector.dataPath")
    assert data_path._walk(body) is body["items"]
    assert jqfast.plain_json(body)
    assert jqfast.plain_json({"items": [{"v": [2**53 + 1, -(2**70)]}]})  # jq 1.7 keeps integer literals
    for unplain in ("x\ud800", float("nan"), float("inf")):
        assert not jqfast.plain_json({"items": [{"v": [unplain]}]}), unplain
        assert data_path._walk({"items": [{"v": [unplain]}]}) is _NOT_WALKED
    assert not jqfast.plain_json({"items": [], "\udc00": 1})


def test_not_plain_paths_stay_with_jq() -> None:
    for expr in (".items[]", "[.data]", ".items | tostring", '"literal"', ".a // .b", ".items[1:]", ".[0]?"):
        assert jqfast.plain_path(expr) is None, expr


def test_data_path_object_error_text_is_unchanged() -> None:
    fast = DataPath.compile(".data", "selector.dataPath")
    body = {"data": {"id": 1}, "meta": {}}
    with pytest.raises(DataPathError) as info:
        fast.extract(body, "GET http://api/x")
    assert str(info.value) == (
        "selector.dataPath '.data' found object, not an array, in the response of GET http://api/x; "
        "top-level keys: data, meta; set selector.singleObject: true to take the object as one item"
    )
    with pytest.raises(DataPathError, match=r"'\.data\.x' failed on .*Cannot index array with string \(\"x\"\)"):
        DataPath.compile(".data.x", "selector.dataPath").extract({"data": [1]}, "GET http://api/x")


def test_pagination_error_text_is_unchanged() -> None:
    plan = PaginationPlan.compile(pagination_spec(type="offset", totalPath=".meta.total"))
    paginator = plan.start("http://api/items")
    with pytest.raises(PaginationError, match=r"^pagination.totalPath '.meta.total' failed on .*Cannot index"):
        paginator._total({"meta": [1]})
    with pytest.raises(PaginationError, match=r"gave an object, not a number"):
        paginator._total({"meta": {"total": {"n": 1}}})
    assert paginator._total({"meta": {"total": 7.0}}) == 7.0
