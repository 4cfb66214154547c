"""jsoncodec: orjson where it agrees with the stdlib json, the stdlib for everything orjson refuses or
would change (each fallback), and the documented canonical form of the content hash."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from httpsync.engine import jsoncodec
from httpsync.errors import ResponseFormatError
from httpsync.state.hashing import canonical_json, entity_hash

TEXTS = [
    b'{"items":[{"id":1,"score":1.5,"f":1.0,"n":null,"t":true}],"total":2}',
    b"  [1, -0, -0.0, 1e2, 1.5e-7, 123456789.123456789, 9007199254740993]  ",
    b'{"a":1,"a":2}',
    '{"\u00e9":"\U0001f600","k":"\\u00e9\\ud83d\\ude00"}'.encode(),
    b'"plain"',
    b"18446744073709551615",  # 2**64 - 1: orjson's largest integer
    b"-9223372036854775808",
    # orjson refuses these: json.loads decides
    b'{"total":NaN,"x":Infinity,"y":-Infinity}',
    b'{"x":1e400}',
    b'["\\ud800", {"\\udfff": 1}]',
    b'\xef\xbb\xbf{"bom": true}',
    '{"utf16": 1}'.encode("utf-16"),
    '{"utf32": [1, 2]}'.encode("utf-32-le"),
    # orjson would turn these integers into floats: json.loads decides
    b"18446744073709551616",
    b"-9223372036854775809",
    b'{"id":123456789012345678901234567890,"x":[-99999999999999999999]}',
    # a long digit run that is no integer: json.loads too, same value
    b'{"id":"12345678901234567890","f":0.1234567890123456789}',
]
BAD_TEXTS = [b"{", b'{"a":}', b"nan", b"[1,]", b"\xe9", b'"\x01"', b"", b"   ", b'{"a":1} x']


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (nan equal to nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("text", TEXTS)
def test_loads_gives_what_json_loads_gives(text: bytes) -> None:
    assert _same(jsoncodec.loads(text), json.loads(text))


@pytest.mark.parametrize("text", BAD_TEXTS)
def test_loads_fails_like_json_loads(text: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        jsoncodec.loads(text)
    assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))


def test_big_integers_stay_exact() -> None:
    assert jsoncodec.loads(b'{"id":18446744073709551616}') == {"id": 2**64}
    assert type(jsoncodec.loads(b"[-9223372036854775809]")[0]) is int


ENTITIES: list[Any] = [
    {"identifier": "1", "blueprint": "user", "properties": {"b": 1, "a": [1.5, None, True], "é": "😀"}},
    {"z": {"y": {"x": 1}}, "a": 0.1, "n": -0.0, "big": 2**63, "neg": -(2**63)},
]
REFUSED: list[Any] = [
    {"identifier": "1", "properties": {"n": 2**64}},  # beyond 64 bits
    {"identifier": "1", "properties": {"n": -(2**63) - 1}},
    {"identifier": "1", "properties": {"s": "lone \ud800"}},  # a lone surrogate
    {"identifier": "1", "properties": {"\udc00": 1}},
    {"identifier": "1", "properties": {"x": float("nan")}},  # orjson would write null
    {"identifier": "1", "properties": {"x": [float("inf")], "y": None}},
    {"identifier": "1", "properties": {"x": {"deep": float("-inf")}}},
]


@pytest.mark.parametrize("entity", ENTITIES)
def test_canonical_form(entity: Any) -> None:
    data = jsoncodec.canonical(entity)
    assert data == json.dumps(entity, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert entity_hash(entity) == hashlib.blake2b(data, digest_size=16).digest()
    assert canonical_json(entity) == data.decode()
    assert json.loads(jsoncodec.compact(entity)) == entity


@pytest.mark.parametrize("entity", REFUSED)
def test_canonical_falls_back_to_the_stdlib(entity: Any) -> None:
    want = json.dumps(entity, sort_keys=True, separators=(",", ":"))
    assert jsoncodec.canonical(entity) == want.encode()
    assert jsoncodec.compact(entity) == json.dumps(entity, separators=(",", ":"))
    assert entity_hash(entity) == hashlib.blake2b(want.encode(), digest_size=16).digest()


def test_the_hash_sees_nan_apart_from_null() -> None:
    assert entity_hash({"x": float("nan")}) != entity_hash({"x": None})
    assert entity_hash({"x": float("inf")}) != entity_hash({"x": float("-inf")})
    assert entity_hash({"x": 2**64}) != entity_hash({"x": float(2**64)})


async def test_the_client_decodes_with_the_same_errors(testapi: Any) -> None:
    """End to end: an invalid body still gives the same ResponseFormatError."""
    from httpsync.engine.client import SourceClient
    from tests.testapi.fixtures import StaticSecrets, source_spec

    async with await SourceClient.create(source_spec(testapi.url), StaticSecrets()) as client:
        body, _ = await client.get_json("GET", f"{testapi.url}/api/offset/users", params={"limit": "2"})
        assert isinstance(body, dict)
        with pytest.raises(ResponseFormatError, match="returned invalid JSON"):
            await client.get_json("GET", f"{testapi.url}/fault/malformed")
