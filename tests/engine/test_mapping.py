"""The mapper: jq semantics, the Python fast path against real jq, per-item errors, itemsToParse."""

from __future__ import annotations

import json
import random
from typing import Any

import jq
import pytest

from httpsync.api.models import EntityMappingSpec
from httpsync.engine import jqfast
from httpsync.engine.jqscope import input_fields
from httpsync.engine.jqutil import first_exact
from httpsync.engine.mapping import Mapper, PageResult, check_key, describe
from httpsync.errors import InvalidJqError

# --------------------------------------------------------------------------- a reference evaluator


def _first(expr: str, value: Any, *, key: bool = False, prefix: str = "") -> Any:
    """Port's semantics, the slow way: one jq run per expression per item, first output or null.
    ``prefix`` builds the unit inside jq (itemsToParse), so its values stay exact jq values, and
    integer literals keep every digit (as jq 1.7 prints them)."""
    text = f"{prefix}[first(({expr}\n))][0]"
    if key:
        text += ' | if type == "number" then tostring else . end'
    return first_exact(jq.compile(text), json.dumps(value))


def reference(query: str, spec: EntityMappingSpec, items: list[Any], items_to_parse: str | None = None) -> PageResult:
    fields: list[tuple[str, str, str, str | None]] = [
        ("mappings.identifier", spec.identifier, "identifier", None),
        ("mappings.blueprint", spec.blueprint, "blueprint", None),
    ]
    for name in ("title", "team", "icon"):
        if getattr(spec, name) is not None:
            fields.append((f"mappings.{name}", getattr(spec, name), name, None))
    fields += [(f"mappings.properties.{k}", v, "properties", k) for k, v in spec.properties.items()]
    fields += [(f"mappings.relations.{k}", v, "relations", k) for k, v in spec.relations.items()]
    out = PageResult()
    for item in items:
        units: list[str] = [""]
        if items_to_parse:
            try:
                elements = _first(items_to_parse, item)
            except ValueError as e:
                out.errors.append(f"itemsToParse: {e}")
                continue
            if not isinstance(elements, list):
                out.errors.append(f"itemsToParse returned {describe(elements)}, not an array")
                continue
            units = [
                f'. as $p | [first(({items_to_parse}\n))][0][{k}] as $e | ($p + {{"item": $e}}) | '
                for k in range(len(elements))
            ]
        for prefix in units:
            try:
                q = _first(query, item, prefix=prefix)
            except ValueError as e:
                out.errors.append(f"selector.query: {e}")
                continue
            if q is False:
                out.filtered += 1
                continue
            if q is not True:
                out.errors.append(f"selector.query returned {describe(q)}, not a boolean")
                continue
            entity: dict[str, Any] = {"title": None, "team": None, "icon": None, "properties": {}, "relations": {}}
            try:
                for label, expr, group, name in fields:
                    try:
                        value = _first(expr, item, key=group in ("identifier", "blueprint"), prefix=prefix)
                    except ValueError as e:
                        raise LookupError(f"{label}: {e}") from None
                    if name is None:
                        entity[group] = value
                    else:
                        entity[group][name] = value
                entity["identifier"] = check_key(entity["identifier"], "mappings.identifier")
                entity["blueprint"] = check_key(entity["blueprint"], "mappings.blueprint")
            except Exception as e:
                out.errors.append(str(e))
                continue
            out.entities.append(entity)  # type: ignore[arg-type]
    return out


def assert_same(got: PageResult, want: PageResult) -> None:
    assert got.filtered == want.filtered
    assert got.errors == want.errors
    assert len(got.entities) == len(want.entities)
    for g, w in zip(got.entities, want.entities, strict=True):
        assert json.dumps(g, sort_keys=True) == json.dumps(w, sort_keys=True)
        assert g == w


# --------------------------------------------------------------------------- random data

SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    42,
    2**53,
    2**53 + 1,
    -(2**60),
    12345678901234567890,
    1.0,
    -0.0,
    1.5,
    0.1,
    1e16,
    1e-7,
    2.5e-5,
    123456.789,
    1e300,
    5e-324,
    "",
    "x",
    "user-1",
    "é ü 日本",
    'q"uote\\',
    "a\x00b",
    "line\nbreak",
    "\u2028",
    "null",
]


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.15:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.3:
        return {k: rand_value(rng, depth + 1) for k in rng.sample(["x", "y", "email", "0"], rng.randint(0, 3))}
    return rng.choice(SCALARS)


def rand_item(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(["str", 3, None, [1, 2], True])
    item = {k: rand_value(rng) for k in ("a", "b", "id", "name", "flag", "o", "l")}
    if rng.random() < 0.7:
        item["id"] = rng.choice([rng.randint(0, 10**6), f"id-{rng.randint(0, 999)}", rng.random() * 100])
    if rng.random() < 0.6:
        item["flag"] = rng.random() < 0.6
    if rng.random() < 0.5:
        item["o"] = {"x": rand_value(rng), "email": rng.choice(["a@b.c", None, 3, {"z": 1}])}
    if rng.random() < 0.5:
        item["l"] = [rand_value(rng) for _ in range(rng.randint(0, 4))]
    for _ in range(rng.randint(0, 2)):
        item.pop(rng.choice(list(item)), None)
    return item


SIMPLE_EXPRS = [
    ".a",
    ".b",
    ".o",
    ".o.x",
    ".o.email",
    '.o["x"]',
    '."a"',
    ".l[0]",
    ".l[-1]",
    ".l[7]",
    ".o.x.y",
    ".a.b.c",
    ".",
    ".a | tostring",
    ".o.x|tostring",
    ".id | tostring",
    '"user"',
    "1.0",
    "-3",
    "1e2",
    "null",
    "true",
    '"\\u00e9t\\u00e9"',
    ".flag",
]
COMPLEX_EXPRS = [
    '"\\(.name)-\\(.id)"',
    '.a // "dflt"',
    "[.l[]?]",
    ".o | keys?",
    ".l | length",
    ".l[]",
    "empty",
    ".a + 1",
    "(.id | tonumber?) // 0",
    "[.a, .b] | map(type)",
    ".o.email | ascii_downcase",
    "if .flag then 1 else 2 end",
]
QUERIES = ["true", ".flag", "false", ".a", ".flag == true and (.id != null)", ".o.x", ".l[0]", "true and .flag"]
KEYS = [".id", ".id | tostring", ".name", '"fixed"', ".a", "null", '""', "1.5", ".o.x", '"\\(.id)"', ".l[0]"]


def rand_spec(rng: random.Random) -> EntityMappingSpec:
    pool = SIMPLE_EXPRS + (COMPLEX_EXPRS if rng.random() < 0.5 else [])
    return EntityMappingSpec(
        identifier=rng.choice(KEYS),
        blueprint=rng.choice(['"user"', '"user"', ".b", "42"]),
        title=rng.choice([None, ".name", '"\\(.name)"']),
        team=rng.choice([None, ".o.x"]),
        icon=rng.choice([None, '"Github"']),
        properties={f"p{i}": rng.choice(pool) for i in range(rng.randint(0, 6))},
        relations={f"r{i}": rng.choice(pool) for i in range(rng.randint(0, 2))},
    )


# --------------------------------------------------------------------------- fast path == jq


@pytest.mark.parametrize("seed", range(12))
def test_random_mappings_equal_the_reference_on_every_path(seed: int) -> None:
    rng = random.Random(seed)
    spec = rand_spec(rng)
    query = rng.choice(QUERIES)
    items = [rand_item(rng) for _ in range(60)]
    want = reference(query, spec, items)
    assert_same(Mapper(query, spec).map_page(items), want)
    assert_same(Mapper(query, spec, fast=False).map_page(items), want)


def test_path_only_mapping_takes_the_fast_path_and_equals_jq() -> None:
    rng = random.Random(99)
    spec = EntityMappingSpec(
        identifier=".id",
        blueprint='"user"',
        title=".name",
        properties={e: e for e in SIMPLE_EXPRS},
    )
    items = [rand_item(rng) for _ in range(120)]
    mapper = Mapper(".flag", spec)
    assert mapper.fast_path
    assert_same(mapper.map_page(items), reference(".flag", spec, items))


@pytest.mark.parametrize("value", [*SCALARS, [1.0, {"a": 2.0}], {"k": [1e16, "é"]}, {"é": -0.0}])
def test_fast_path_values_equal_jq(value: Any) -> None:
    want = first_exact(jq.compile("."), json.dumps(value))  # integers beyond 2**53 keep every digit
    assert json.dumps(jqfast.normalize(value)) == json.dumps(want)


@pytest.mark.parametrize("value", [v for v in SCALARS if not isinstance(v, (list, dict))])
def test_fast_path_tostring_equals_jq(value: Any) -> None:
    assert jqfast.tostring(value) == jq.compile("tostring").input_value(value).first()


def test_tostring_of_floats_equals_jq_on_many_values() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(200)]
    values += [10.0**e for e in range(-30, 30)] + [1.5 * 10.0**e for e in range(-30, 30)]
    values += [rng.random() * 10 ** rng.randint(-320, 300) for _ in range(200)]
    want = jq.compile("[.[] | tostring]").input_value(values).first()
    assert [jqfast.tostring(v) for v in values] == want


def test_non_scalar_tostring_and_lone_surrogates_are_left_to_jq() -> None:
    for value in ([1], {"a": 1}, float("inf")):
        with pytest.raises(jqfast.Fallback):
            jqfast.tostring(value)
    assert jqfast.normalize(2**53 + 1) == 2**53 + 1  # jq 1.7 keeps the literal
    with pytest.raises(jqfast.Fallback):
        jqfast.normalize("lone \ud800 surrogate")


@pytest.mark.parametrize(
    ("expr", "steps"),
    [
        (".a", ("a",)),
        (".a.b", ("a", "b")),
        ('.a["x y"]', ("a", "x y")),
        ('."a-b".c', ("a-b", "c")),
        (".a[0][-1]", ("a", 0, -1)),
        ('.["a"].b', ("a", "b")),
        (".", ()),
    ],
)
def test_simple_paths_are_recognised(expr: str, steps: tuple[Any, ...]) -> None:
    parsed = jqfast.parse_simple(expr)
    assert parsed is not None and parsed.steps == steps and not parsed.tostring


@pytest.mark.parametrize("expr", [".a?", ".a-b", ".a // 1", ".[]", ".a[]", '"\\(.a)"', ".a | length", "$x", ". a"])
def test_other_expressions_are_not_simple(expr: str) -> None:
    assert jqfast.parse_simple(expr) is None


# --------------------------------------------------------------------------- semantics


def spec(**kw: Any) -> EntityMappingSpec:
    base: dict[str, Any] = {"identifier": ".id", "blueprint": '"user"'}
    base.update(kw)
    return EntityMappingSpec(**base)


@pytest.mark.parametrize("fast", [True, False])
def test_query_filters_and_a_non_boolean_is_an_error(fast: bool) -> None:
    items = [{"id": "a", "on": True}, {"id": "b", "on": False}, {"id": "c", "on": "yes"}, {"id": "d"}]
    page = Mapper(".on", spec(), fast=fast).map_page(items)
    assert [e["identifier"] for e in page.entities] == ["a"]
    assert page.filtered == 1
    assert page.errors == [
        "selector.query returned a string, not a boolean",
        "selector.query returned null, not a boolean",
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_identifier_rules(fast: bool) -> None:
    items: list[Any] = [
        {"id": 42},
        {"id": 12345678901234567890},
        {"id": 1.5},
        {"id": "x"},
        {"id": None},
        {"id": ""},
        {"id": True},
        {"id": {"a": 1}},
    ]
    page = Mapper("true", spec(), fast=fast).map_page(items)
    assert [e["identifier"] for e in page.entities] == ["42", "12345678901234567890", "1.5", "x"]
    assert page.errors == [
        "mappings.identifier is null",
        "mappings.identifier is an empty string",
        "mappings.identifier returned a boolean, not a string or number",
        "mappings.identifier returned an object, not a string or number",
    ]


def test_blueprint_must_be_a_non_empty_string() -> None:
    page = Mapper("true", spec(blueprint=".kind")).map_page([{"id": 1, "kind": "svc"}, {"id": 2}])
    assert [e["blueprint"] for e in page.entities] == ["svc"]
    assert page.errors == ["mappings.blueprint is null"]


@pytest.mark.parametrize("fast", [True, False])
def test_one_bad_item_does_not_fail_the_page_and_the_error_names_the_field(fast: bool) -> None:
    items = [{"id": 1, "o": {"email": "a@b"}}, {"id": 2, "o": "oops"}, {"id": 3, "o": None}]
    page = Mapper("true", spec(properties={"email": ".o.email"}), fast=fast).map_page(items)
    assert [e["identifier"] for e in page.entities] == ["1", "3"]
    assert page.entities[1]["properties"] == {"email": None}
    assert page.errors == ['mappings.properties.email: Cannot index string with string ("email")']


def test_an_expression_error_wins_over_an_invalid_identifier() -> None:
    items = [{"o": "s"}]
    for fast in (True, False):
        page = Mapper("true", spec(properties={"e": ".o.x"}), fast=fast).map_page(items)
        assert page.errors == ['mappings.properties.e: Cannot index string with string ("x")']


def test_each_expression_takes_the_first_output_or_null() -> None:
    m = Mapper("true", spec(properties={"first": ".tags[]", "none": "empty", "both": ".a, .b"}))
    page = m.map_page([{"id": 1, "tags": ["x", "y"], "a": 1, "b": 2}])
    assert page.entities[0]["properties"] == {"first": "x", "none": None, "both": 1}
    assert page.entities[0]["title"] is None and page.entities[0]["relations"] == {}


def test_an_error_after_the_first_output_is_ignored_like_jq_first() -> None:
    page = Mapper("true", spec(properties={"p": '.a, error("late")'})).map_page([{"id": 1, "a": 5}])
    assert page.errors == [] and page.entities[0]["properties"] == {"p": 5}


def test_an_item_jq_cannot_read_is_an_error_of_its_own() -> None:
    items = [{"id": 1, "n": "ok"}, {"id": 2, "n": "bad \ud800"}]
    page = Mapper("true", spec(properties={"n": '"<\\(.n)>"'})).map_page(items)
    assert [e["identifier"] for e in page.entities] == ["1"]
    assert len(page.errors) == 1 and page.errors[0].startswith("the item cannot be read by jq")


def test_string_interpolation_map_and_select() -> None:
    m = Mapper(
        '.active and .dept != "ops"',
        spec(
            title='"\\(.name) <\\(.email)>"',
            properties={"tags": '.tags | map("t-" + .)', "other": '[.tags[] | select(. != "a")]'},
            relations={"manager": '.manager.email // "none"'},
        ),
    )
    items = [
        {"id": 1, "name": "Ann", "email": "ann@x", "active": True, "dept": "eng", "tags": ["a", "b"], "manager": {}},
        {"id": 2, "name": "Bob", "active": True, "dept": "ops", "tags": []},
    ]
    page = m.map_page(items)
    assert page.filtered == 1
    assert page.entities == [
        {
            "identifier": "1",
            "blueprint": "user",
            "title": "Ann <ann@x>",
            "team": None,
            "icon": None,
            "properties": {"tags": ["t-a", "t-b"], "other": ["b"]},
            "relations": {"manager": "none"},
        }
    ]


# --------------------------------------------------------------------------- itemsToParse


@pytest.mark.parametrize("items_to_parse", [".children", "[.children[] | select(true)]"])
@pytest.mark.parametrize("fast", [True, False])
def test_items_to_parse_exposes_each_element_as_item_next_to_the_parent(items_to_parse: str, fast: bool) -> None:
    m = Mapper(
        ".item.keep",
        spec(identifier='"\\(.id)-\\(.item.n)"', properties={"parent": ".name", "n": ".item.n"}),
        items_to_parse,
        fast=fast,
    )
    items: list[Any] = [
        {"id": 1, "name": "p1", "children": [{"n": 1, "keep": True}, {"n": 2, "keep": False}]},
        {"id": 2, "name": "p2", "children": "nope"},
        {"id": 3, "name": "p3", "children": [{"n": 3, "keep": True}]},
        "not an object",
    ]
    page = m.map_page(items)
    assert [(e["identifier"], e["properties"]) for e in page.entities] == [
        ("1-1", {"parent": "p1", "n": 1}),
        ("3-3", {"parent": "p3", "n": 3}),
    ]
    assert page.filtered == 1
    assert len(page.errors) == 2
    assert page.errors[1] == 'itemsToParse: Cannot index string with string ("children")'
    assert page.errors[0] in (
        "itemsToParse returned a string, not an array",  # .children
        'itemsToParse: Cannot iterate over string ("nope")',  # [.children[] | ...]
    )


@pytest.mark.parametrize("seed", range(6))
def test_items_to_parse_equals_the_reference(seed: int) -> None:
    rng = random.Random(1000 + seed)
    s = EntityMappingSpec(
        identifier=rng.choice(['"\\(.id)-\\(.item.x)"', ".item.x", ".item | tostring"]),
        blueprint='"child"',
        properties={"parent": ".id", "x": rng.choice([".item.x", ".item.x.y", ".item | type"]), "p": ".a"},
    )
    items = [rand_item(rng) for _ in range(40)]
    for it in items:
        if isinstance(it, dict) and rng.random() < 0.8:
            it["kids"] = [rand_value(rng) for _ in range(rng.randint(0, 3))]
    for itp in (".kids", ".kids | map(.)"):
        want = reference(".item != false", s, items, itp)
        assert_same(Mapper(".item != false", s, itp).map_page(items), want)
        assert_same(Mapper(".item != false", s, itp, fast=False).map_page(items), want)


# --------------------------------------------------------------------------- invalid jq


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": ".a ==="}, "selector.query"),
        ({"identifier": ".id |"}, "mappings.identifier"),
        ({"properties": {"email": ".email | nosuchfn"}}, "mappings.properties.email"),
        ({"relations": {"team": "{"}}, "mappings.relations.team"),
        ({"items_to_parse": ".[] |"}, "itemsToParse"),
    ],
)
def test_invalid_jq_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    query = kwargs.pop("query", "true")
    items_to_parse = kwargs.pop("items_to_parse", None)
    with pytest.raises(InvalidJqError) as exc:
        Mapper(query, spec(**kwargs), items_to_parse)
    assert str(exc.value).startswith(f"{field}: invalid jq")
    assert exc.value.reason == "InvalidJq"


def test_an_expression_that_only_fails_when_combined_is_named() -> None:
    # A trailing comment with a backslash swallows the next line in jq >= 1.7.1.
    expr = ".a # note \\"
    try:
        jq.compile(f"[({expr}\n)]")
    except ValueError:
        with pytest.raises(InvalidJqError, match=r"^mappings\.properties\.p: invalid jq"):
            Mapper("true", spec(properties={"p": expr}), fast=False)
    else:
        page = Mapper("true", spec(properties={"p": expr}), fast=False).map_page([{"id": 1, "a": 2}])
        assert page.entities[0]["properties"] == {"p": 2}


def test_empty_page() -> None:
    assert Mapper("true", spec()).map_page([]) == PageResult()


# --------------------------------------------------------------------------- input projection


@pytest.mark.parametrize(
    ("expr", "fields"),
    [
        (".a.b", {"a"}),
        ('"\\(.name) <\\(.email)>"', {"name", "email"}),
        (".tags | map(. + .x)", {"tags"}),
        ('[.tags[] | select(. != "a")]', {"tags"}),
        (".a[.b]", {"a", "b"}),
        ("{a, b: .c}", {"a", "c"}),
        (".a as $x | .b", {"a", "b"}),
        ("reduce .xs[] as $x (.init; . + $x)", {"xs", "init"}),
        ("try .a catch .", {"a"}),
        ('"fixed"', set()),
    ],
)
def test_input_fields(expr: str, fields: set[str]) -> None:
    assert input_fields(expr) == fields


@pytest.mark.parametrize(
    "expr",
    [
        ".",
        "..",
        ".[]",
        "keys",
        "length",
        "tostring",
        "select(.a)",
        "map(.a)",
        "if .a then .b end",
        ".a = 1",
        "def f: .a; f",
        ". as $x | $x.a",
        ".[.k]",
        "to_entries",
        '{"\\(.a)"}',
        "@json",
        "error",
        "not",
    ],
)
def test_input_fields_is_none_when_the_whole_input_may_be_read(expr: str) -> None:
    assert input_fields(expr) is None


def test_projected_items_give_the_same_results() -> None:
    rng = random.Random(5)
    exprs = [e for e in SIMPLE_EXPRS + COMPLEX_EXPRS + QUERIES if input_fields(e) is not None]
    exprs += ["{a, x: .o.x}", ".a as $v | [$v, .b]", "reduce .l[]? as $x (0; . + 1)", ".l | map(type)"]
    items = [rand_item(rng) for _ in range(100)]
    for expr in exprs:
        fields = input_fields(expr)
        assert fields is not None
        prog = jq.compile(f'[.[] | [try (({expr}\n)) catch "error: \\(.)"]]')
        projected = [{k: v for k, v in it.items() if k in fields} if isinstance(it, dict) else it for it in items]
        assert prog.input_value(projected).first() == prog.input_value(items).first(), expr
