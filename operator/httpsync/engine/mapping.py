"""Turn a page of API items into entities, with every jq expression compiled once.

Semantics (those of Port's generic HTTP integration, made explicit):

- ``selector.query`` is evaluated first; ``true`` keeps the item, ``false`` filters it (counted), any
  other value is a mapping error for that item ("selector.query returned a string, not a boolean").
- Each mapping expression takes jq's *first* output; no output gives ``null``.
- ``identifier`` and ``blueprint`` must give a non-empty string. A number is converted with jq's
  ``tostring`` (``42`` -> ``"42"``, ``1.5`` -> ``"1.5"``; big integer ids keep every digit); null,
  ``""``, booleans, arrays and objects are mapping errors and the item is skipped.
- ``itemsToParse`` must give an array per item; each element becomes its own unit, the parent's fields
  plus ``.item`` (the element; ``itemsToParseName`` names the key), and the query and mappings then
  apply to that unit. With ``itemsToParseTopLevelTransform`` the parent loses the path
  ``itemsToParse`` starts with (``.items`` of ``.items | map(...)``) before the element is added.
- An error while mapping one item (``.a.b`` on a string, a failing ``tonumber`` ...) skips that
  item and is reported as "<field>: <jq's message>"; the rest of the page is mapped.

Performance: simple expressions (paths, ``| tostring``, literals; see :mod:`jqfast`) run in Python;
the rest run as ONE jq program per page (``[.[] | ...]``), not per field per item. When an item does
something unusual the fast path hands it to an exact jq program, so results do not depend on which
path evaluated them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jq

from httpsync.api.models import EntityMappingSpec, HttpEndpointMappingSpec
from httpsync.engine import jqfast, jqscope, jsoncodec
from httpsync.engine.jqfast import Fallback, SimpleExpr
from httpsync.engine.jqutil import compile_jq, first_exact, jq_error_line, json_type
from httpsync.engine.types import Entity
from httpsync.errors import ConfigError, InvalidJqError

QUERY_FIELD = "selector.query"
ITEMS_FIELD = "itemsToParse"
ITEM_KEY = "item"
TRANSFORM_FIELD = "itemsToParseTopLevelTransform"
# The path an itemsToParse expression starts with (what the top-level transform deletes).
_PATH_STEP = r'(?:\.[A-Za-z_][A-Za-z0-9_]*|\.?\[[^\]]+\]|\."(?:[^"\\]|\\.)*")'
_LEADING_PATH = re.compile(rf'^\s*(\.(?:[A-Za-z_][A-Za-z0-9_]*|\[[^\]]+\]|"(?:[^"\\]|\\.)*")(?:{_PATH_STEP})*)')
# jq builtins that can generate without end; fields using them keep jq's first() short-circuit.
_GENERATORS = ("repeat", "recurse", "while", "until", "range", "limit", "input", "def ")

_ARTICLE = {
    "null": "null",
    "boolean": "a boolean",
    "number": "a number",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


@dataclass(slots=True)
class PageResult:
    entities: list[Entity] = field(default_factory=list)
    filtered: int = 0
    errors: list[str] = field(default_factory=list)


class MappingError(Exception):
    """One item cannot be mapped (the message names the field)."""


class _Field(NamedTuple):
    label: str  # mappings.properties.email
    expr: str
    group: str  # identifier, blueprint, title, team, icon, properties, relations
    name: str | None  # property or relation name
    is_key: bool  # identifier and blueprint


def describe(value: Any) -> str:
    """ "a string", "an object", "null" ... for messages."""
    return _ARTICLE.get(json_type(value), type(value).__name__)


def check_key(value: Any, label: str) -> str:
    """An identifier or blueprint after number conversion: a non-empty string, or a MappingError."""
    if type(value) is str and value:
        return value
    if value is None:
        raise MappingError(f"{label} is null")
    if value == "":
        raise MappingError(f"{label} is an empty string")
    raise MappingError(f"{label} returned {describe(value)}, not a string or number")


def search_query_jq(value: Any) -> str:
    """The jq of a mapping value: a jq expression as is; a search query ``{combinator, rules}`` (every
    string in it jq) as one jq object construction giving the evaluated query, each string's first
    output (or null) in its place."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_leaf(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_leaf(v) for v in value) + "]"
    return json.dumps(value)


def _leaf(value: Any) -> str:
    if isinstance(value, str):
        return f"([first(({value}\n))][0])"
    return search_query_jq(value)


def _fields_of(m: EntityMappingSpec) -> list[_Field]:
    out = [
        _Field("mappings.identifier", m.identifier, "identifier", None, True),
        _Field("mappings.blueprint", m.blueprint, "blueprint", None, True),
    ]
    for name in ("title", "team", "icon"):
        expr = getattr(m, name)
        if expr is not None:
            out.append(_Field(f"mappings.{name}", search_query_jq(expr), name, None, False))
    out += [_Field(f"mappings.properties.{k}", v, "properties", k, False) for k, v in m.properties.items()]
    out += [
        _Field(f"mappings.relations.{k}", search_query_jq(v), "relations", k, False) for k, v in m.relations.items()
    ]
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _error_text(err: Any) -> str:
    return err if isinstance(err, str) else json.dumps(err)


# --------------------------------------------------------------------------- jq program text


def _wrap(expr: str, exact: bool) -> str:
    """jq text giving the first output of ``expr`` (or null). The plain form is faster but may give
    0 or 2+ outputs; the caller checks the shape and re-runs the item exactly when it is off."""
    if exact or any(g in expr for g in _GENERATORS):
        return f"([first(({expr}\n))][0])"
    return f"(({expr}\n))"


def _value(f: _Field, exact: bool) -> str:
    text = _wrap(f.expr, exact)
    return f'({text} | if type == "number" then tostring else . end)' if f.is_key else text


def _body(fields: list[_Field], query: str | None, exact: bool) -> str:
    values = "[" + ", ".join(_value(f, exact) for f in fields) + "]"
    if query is None:
        return values
    return (
        f"{_wrap(query, exact)} as $q | if $q == true then {values} "
        f'elif $q == false then false else {{"q": ($q | type)}} end'
    )


def _units_program(body: str) -> str:
    return f'[.[] | [try ({body}) catch {{"e": .}}]]'


def _items_program(items_expr: str, body: str, key: str = ITEM_KEY, delete: str | None = None) -> str:
    parent = "." if delete is None else f"del({delete})"
    return (
        f'[.[] | [try ({_wrap(items_expr, True)} as $a | if ($a | type) == "array" then '
        f'({parent} as $p | {{"x": [$a[] | [try (($p + {{{json.dumps(key)}: .}}) | {body}) catch {{"e": .}}]]}}) '
        f'else {{"t": ($a | type)}} end) catch {{"e": .}}]]'
    )


def leading_path(items_expr: str) -> str:
    """The path ``itemsToParse`` starts with (``.data.items`` of ``.data.items | map(.x)``): what the
    top-level transform removes from the parent. ConfigError when there is none."""
    m = _LEADING_PATH.match(items_expr)
    if m is None:
        raise ConfigError(
            f"{TRANSFORM_FIELD}: itemsToParse {items_expr!r} does not start with a path (like .items) to remove "
            "from the parent; start it with one or set itemsToParseTopLevelTransform: false"
        )
    return m.group(1)


def _without(item: dict[str, Any], steps: tuple[str | int, ...]) -> dict[str, Any]:
    """``item`` without the value at the (string) ``steps``, copied along the path (jq's ``del``)."""
    head, rest = steps[0], steps[1:]
    if type(head) is not str:
        raise Fallback
    if head not in item:
        return item
    out = dict(item)
    if not rest:
        del out[head]
        return out
    child = item[head]
    if child is None:
        return item
    if type(child) is not dict:
        raise Fallback  # jq decides (an error, or an array index)
    out[head] = _without(child, rest)
    return out


# --------------------------------------------------------------------------- generated Python


def _gen_path(lines: list[str], var: str, src: str, steps: tuple[str | int, ...]) -> None:
    """Append code setting ``var`` to ``src`` followed along ``steps`` (raising Fallback like jqfast.walk)."""
    if any(type(s) is not str for s in steps):
        lines.append(f"    {var} = _walk({src}, {steps!r})")
        return
    if not steps:
        lines.append(f"    {var} = {src}")
        return
    lines.append(f"    {var} = {src}.get({steps[0]!r})")  # src is known to be a dict
    for step in steps[1:]:
        lines += [
            f"    if type({var}) is dict: {var} = {var}.get({step!r})",
            f"    elif {var} is not None: raise _Fallback",
        ]


def _gen_simple(lines: list[str], var: str, s: SimpleExpr, f: _Field, consts: dict[str, Any]) -> None:
    """Code setting ``var`` to the field's value (keys converted, not yet checked)."""
    if s.is_const:
        consts[f"_c_{var}"] = jqfast.to_key(s.const) if f.is_key else s.const
        lines.append(f"    {var} = _c_{var}")
        return
    _gen_path(lines, var, "u", s.steps)
    convert = "_tostring" if s.tostring else "_to_key" if f.is_key else "_normalize"
    lines.append(f"    if type({var}) is not str or not {var}.isascii(): {var} = {convert}({var})")


def _gen_build(fields: list[_Field], simple: list[SimpleExpr | None]) -> Callable[[Any, list[Any]], Entity]:
    """``build(unit, row)``: the entity of one unit; ``row`` holds the jq results of the non-simple fields.

    Every value is computed before identifier and blueprint are checked, so an expression error wins
    over an invalid key, as on the jq path."""
    lines = ["def build(u, row):"]
    if any(s is not None and not s.is_const for s in simple):
        lines.append("    if type(u) is not dict: raise _Fallback")
    consts: dict[str, Any] = {}
    k = 0
    for i, (f, s) in enumerate(zip(fields, simple, strict=True)):
        var = f"v{i}"
        if s is not None:
            _gen_simple(lines, var, s, f, consts)
        else:
            lines.append(f"    {var} = row[{k}]")
            k += 1
    for i, f in enumerate(fields):
        if f.is_key:
            lines.append(f"    if type(v{i}) is not str or not v{i}: v{i} = _check_key(v{i}, {f.label!r})")
    by_group: dict[str, str] = {}
    props: dict[str, list[str]] = {"properties": [], "relations": []}
    for i, f in enumerate(fields):
        if f.name is None:
            by_group[f.group] = f"v{i}"
        else:
            props[f.group].append(f"{f.name!r}: v{i}")
    lines.append(
        "    return {"
        f'"identifier": {by_group["identifier"]}, "blueprint": {by_group["blueprint"]}, '
        f'"title": {by_group.get("title", "None")}, "team": {by_group.get("team", "None")}, '
        f'"icon": {by_group.get("icon", "None")}, '
        f'"properties": {{{", ".join(props["properties"])}}}, "relations": {{{", ".join(props["relations"])}}}}}'
    )
    namespace: dict[str, Any] = {
        "_Fallback": Fallback,
        "_MappingError": MappingError,
        "_walk": jqfast.walk,
        "_normalize": jqfast.normalize,
        "_tostring": jqfast.tostring,
        "_to_key": jqfast.to_key,
        "_check_key": check_key,
        **consts,
    }
    exec(compile("\n".join(lines), "<httpsync-mapping>", "exec"), namespace)
    return namespace["build"]  # type: ignore[no-any-return]


def _simple_eval(s: SimpleExpr) -> Callable[[Any], Any]:
    """Evaluate a simple query (raw value; a non-boolean is reported by the caller)."""
    if s.is_const:
        return lambda _u: s.const
    steps = s.steps

    def query(u: Any) -> Any:
        value = jqfast.walk(u, steps)
        if s.tostring:
            return jqfast.tostring(value)
        if type(value) is str:
            jqfast.check_str(value)
        return value

    return query


# --------------------------------------------------------------------------- the mapper


_FILTERED = object()


class Mapper:
    """Maps pages of one endpoint's items to entities. Build once per mapping spec; thread-safe.

    Raises :class:`InvalidJqError` naming the field (``selector.query``, ``mappings.identifier``,
    ``mappings.properties.email``, ``itemsToParse``) when an expression does not compile.
    """

    def __init__(
        self,
        query: str,
        mappings: EntityMappingSpec,
        items_to_parse: str | None = None,
        *,
        items_to_parse_name: str | None = None,
        top_level_transform: bool = False,
        fast: bool = True,
    ) -> None:
        self._item_key = items_to_parse_name or ITEM_KEY
        self._delete = leading_path(items_to_parse) if items_to_parse and top_level_transform else None
        delete_simple = jqfast.parse_simple(self._delete) if self._delete and fast else None
        self._delete_steps = delete_simple.steps if delete_simple is not None and delete_simple.steps else None
        self._fields = _fields_of(mappings)
        self._query_prog = compile_jq(query, QUERY_FIELD)
        self._field_progs = [compile_jq(f.expr, f.label) for f in self._fields]
        self._items_prog = compile_jq(items_to_parse, ITEMS_FIELD) if items_to_parse else None
        self._labelled = [(QUERY_FIELD, query), *((f.label, f.expr) for f in self._fields)]
        if items_to_parse:
            self._labelled.append((ITEMS_FIELD, items_to_parse))

        q_simple = jqfast.parse_simple(query) if fast else None
        always_true = q_simple is not None and q_simple.is_const and q_simple.const is True
        query_jq = None if always_true else query
        items_simple = jqfast.parse_simple(items_to_parse) if fast and items_to_parse else None
        if items_simple is not None and (items_simple.is_const or items_simple.tostring):
            items_simple = None  # not an array path: let jq report it
        if self._delete is not None and self._delete_steps is None:
            items_simple = None  # a path Python cannot delete: jq does
        key, delete = self._item_key, self._delete

        exact_body = _body(self._fields, query_jq, exact=True)
        self._exact_units = self._compile(_units_program(exact_body))
        self._exact_items = (
            self._compile(_items_program(items_to_parse, exact_body, key, delete)) if items_to_parse else None
        )
        # itemsToParse that needs jq: the whole mapping runs in jq (the elements are jq values).
        self._jq_items = items_to_parse is not None and items_simple is None
        if self._jq_items:
            assert items_to_parse is not None
            self._plain_items = self._compile(
                _items_program(items_to_parse, _body(self._fields, query_jq, False), key, delete)
            )
            self._items_projection = _projection(
                [items_to_parse], [f.expr for f in self._fields] + ([query_jq] if query_jq else []), key
            )
        self._items_steps = items_simple.steps if items_simple is not None else None

        simple = [jqfast.parse_simple(f.expr) if fast else None for f in self._fields]
        self._complex = [f for f, s in zip(self._fields, simple, strict=True) if s is None]
        self._query_py = _simple_eval(q_simple) if q_simple is not None and not always_true else None
        plain_query = query_jq if self._query_py is None else None
        needs_jq = bool(self._complex) or plain_query is not None
        self._plain = self._compile(_units_program(_body(self._complex, plain_query, False))) if needs_jq else None
        self._projection = _projection([], [f.expr for f in self._complex] + ([plain_query] if plain_query else []))
        self._build = _gen_build(self._fields, simple)
        self.fast_path = not needs_jq and not self._jq_items
        """True when every expression runs in Python (no jq run per page)."""

    @classmethod
    def from_spec(cls, spec: HttpEndpointMappingSpec, *, fast: bool = True) -> Mapper:
        return cls(
            spec.selector.query,
            spec.mappings,
            spec.items_to_parse,
            items_to_parse_name=spec.items_to_parse_name,
            top_level_transform=spec.items_to_parse_top_level_transform,
            fast=fast,
        )

    def _compile(self, text: str) -> Any:
        try:
            return compile_jq(text, "mappings")
        except InvalidJqError:
            pass
        # An expression that compiles alone but not inside the combined program: name it.
        for label, expr in self._labelled:
            try:
                jq.compile(f"[first(({expr}\n))][0]")
            except ValueError as e:
                detail = jq_error_line(e, "syntax error")
                raise InvalidJqError(
                    f"{label}: invalid jq {expr!r}: it does not compile inside a larger program "
                    f"(a comment ending in a backslash?): {detail}"
                ) from None
        raise InvalidJqError("mappings: the expressions cannot be combined into one jq program")

    # ------------------------------------------------------------------ public

    def map_page(self, items: list[Any]) -> PageResult:
        """Map one page. Never raises for bad items: they become ``errors`` entries."""
        result = PageResult()
        if not items:
            return result
        if self._jq_items:
            outcomes = self._map_items_jq(self._plain_items, items, exact=False, projection=self._items_projection)
        else:
            outcomes = self._map_units(items)
        for o in outcomes:
            if type(o) is dict:
                result.entities.append(o)  # type: ignore[arg-type]
            elif o is _FILTERED:
                result.filtered += 1
            else:
                result.errors.append(o)
        return result

    # ------------------------------------------------------------------ units (Python + one jq run)

    def _map_units(self, items: list[Any]) -> list[Any]:
        units: list[Any] = items
        outcomes: list[Any]
        todo: list[int]
        if self._items_steps is None:
            outcomes = [None] * len(units)
            todo = list(range(len(units)))
        else:
            units, outcomes, todo = self._expand(items)

        rerun: list[int] = []
        if self._query_py is not None:
            passing: list[int] = []
            query = self._query_py
            for i in todo:
                try:
                    q = query(units[i])
                except Fallback:
                    rerun.append(i)
                    continue
                if q is True:
                    passing.append(i)
                elif q is False:
                    outcomes[i] = _FILTERED
                else:
                    outcomes[i] = f"{QUERY_FIELD} returned {describe(q)}, not a boolean"
            todo = passing

        rows: dict[int, list[Any]] = {}
        if self._plain is not None and todo:
            n = len(self._complex)
            results = self._run(self._plain, _project([units[i] for i in todo], self._projection))
            kept: list[int] = []
            for i, r in zip(todo, results, strict=True):
                row = _row_of(r, n)
                if row is None:
                    rerun.append(i)
                elif type(row) is list:
                    rows[i] = row
                    kept.append(i)
                else:
                    outcomes[i] = row
            todo = kept

        build = self._build
        for i in todo:
            try:
                outcomes[i] = build(units[i], rows.get(i))
            except (Fallback, RecursionError):  # RecursionError: a value nested very deeply
                rerun.append(i)
            except MappingError as e:
                outcomes[i] = str(e)

        if rerun:
            rerun.sort()
            for i, o in zip(rerun, self._map_units_exact([units[i] for i in rerun]), strict=True):
                outcomes[i] = o
        if self._items_steps is None:
            return outcomes
        flat: list[Any] = []
        for o in outcomes:
            if type(o) is list:
                flat.extend(o)  # a parent expanded by jq
            else:
                flat.append(o)
        return flat

    def _expand(self, items: list[Any]) -> tuple[list[Any], list[Any], list[int]]:
        """itemsToParse in Python. A parent that needs jq gets its outcomes (a list) in place."""
        assert self._items_steps is not None
        units: list[Any] = []
        outcomes: list[Any] = []
        todo: list[int] = []
        key, delete = self._item_key, self._delete_steps
        for item in items:
            try:
                elements = jqfast.walk(item, self._items_steps)
                if type(item) is not dict or type(elements) is not list:
                    raise Fallback
                parent = item if delete is None else _without(item, delete)
            except Fallback:
                units.append(None)
                outcomes.append(self._map_items_jq(self._exact_items, [item], exact=True))
                continue
            for element in elements:
                unit = dict(parent)
                unit[key] = element
                todo.append(len(units))
                units.append(unit)
                outcomes.append(None)
        return units, outcomes, todo

    def _map_units_exact(self, units: list[Any]) -> list[Any]:
        out: list[Any] = []
        n = len(self._fields)
        for unit, r in zip(units, self._run(self._exact_units, units), strict=True):
            row = _row_of(r, n)
            if row is None:
                row = self._diagnose(unit, r)
            out.append(self._entity(row) if type(row) is list else row)
        return out

    # ------------------------------------------------------------------ itemsToParse in jq

    def _map_items_jq(
        self, prog: Any, items: list[Any], *, exact: bool, projection: tuple[str, ...] | None = None
    ) -> list[Any]:
        outcomes: list[Any] = []
        for item, r in zip(items, self._run(prog, _project(items, projection)), strict=True):
            block = self._item_outcomes(item, r, exact=exact)
            if block is None:
                block = self._item_outcomes(item, self._run(self._exact_items, [item])[0], exact=True)
            outcomes.extend(block or ())
        return outcomes

    def _item_outcomes(self, item: Any, r: Any, *, exact: bool) -> list[Any] | None:
        """Outcomes of one parent item; None asks for an exact re-run."""
        if type(r) is not list or len(r) != 1 or type(r[0]) is not dict:
            return ["mapping failed: unexpected jq output"] if exact else None
        v = r[0]
        if "x" in v:
            out: list[Any] = []
            n = len(self._fields)
            for k, er in enumerate(v["x"]):
                row = _row_of(er, n)
                if row is None:
                    if not exact:
                        return None
                    row = self._diagnose(self._element(item, k), er)
                out.append(self._entity(row) if type(row) is list else row)
            return out
        if "t" in v:
            return [f"{ITEMS_FIELD} returned {_ARTICLE.get(v['t'], v['t'])}, not an array"]
        if "p" in v:
            return [_unreadable(v["p"])]
        return [f"{ITEMS_FIELD}: {_error_text(v.get('e'))}"]

    def _element(self, item: Any, k: int) -> Any:
        try:
            elements = self._items_prog.input_value(item).first()  # type: ignore[union-attr]
            parent = item if self._delete is None else jq.compile(f"del({self._delete})").input_value(item).first()
            return {**parent, self._item_key: elements[k]}
        except Exception:  # only used to name the failing field
            return item

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _run(prog: Any, batch: list[Any]) -> list[Any]:
        """One jq run over a batch; an item jq cannot read gets a ``{"p": message}`` result."""
        try:
            return first_exact(prog, _dumps(batch))  # type: ignore[no-any-return]
        except (ValueError, UnicodeEncodeError, RecursionError) as e:
            if len(batch) == 1:
                return [[{"p": str(e)}]]
        out: list[Any] = []
        for item in batch:
            try:
                out.append(first_exact(prog, _dumps([item]))[0])
            except (ValueError, UnicodeEncodeError, RecursionError) as e:
                out.append([{"p": str(e)}])
        return out

    def _entity(self, row: list[Any]) -> Entity | str:
        """An entity from a full row of jq values (all fields, in order), or an error message."""
        entity: dict[str, Any] = {
            "identifier": None,
            "blueprint": None,
            "title": None,
            "team": None,
            "icon": None,
            "properties": {},
            "relations": {},
        }
        try:
            for f, value in zip(self._fields, row, strict=True):
                if f.is_key:
                    value = check_key(value, f.label)
                if f.name is None:
                    entity[f.group] = value
                else:
                    entity[f.group][f.name] = value
        except MappingError as e:
            return str(e)
        return entity  # type: ignore[return-value]

    def _diagnose(self, unit: Any, result: Any) -> str:
        """Name the field that fails on ``unit`` by evaluating each expression alone."""
        checks = [(QUERY_FIELD, self._query_prog)]
        checks += [(f.label, p) for f, p in zip(self._fields, self._field_progs, strict=True)]
        for label, prog in checks:
            try:
                prog.input_value(unit).first()
            except StopIteration:
                continue
            except ValueError as e:
                return f"{label}: {e}"
        return f"mapping failed: {_error_text(_error_value(result))}"


def _projection(whole: list[str], merged: list[str], merged_key: str | None = None) -> tuple[str, ...] | None:
    """Top-level fields jq needs from each item (None: all). ``whole`` read the item itself; ``merged``
    read the item with ``merged_key`` replaced (itemsToParse units), so they never see its own value."""
    needed: set[str] = set()
    for i, expr in enumerate(whole + merged):
        fields = jqscope.input_fields(expr)
        if fields is None:
            return None
        needed |= fields if i < len(whole) or merged_key is None else fields - {merged_key}
    return tuple(sorted(needed))


def _project(items: list[Any], fields: tuple[str, ...] | None) -> list[Any]:
    """Items reduced to ``fields`` (what jq must parse); non-objects unchanged."""
    if fields is None:
        return items
    return [{k: it[k] for k in fields if k in it} if type(it) is dict else it for it in items]


def _unreadable(message: str) -> str:
    if "surrogate" in message:
        message = f"it holds {jsoncodec.LONE_SURROGATE}"
    elif "recursion" in message:
        message = "it is nested too deeply"
    return f"the item cannot be read by jq: {message}"


def _error_value(r: Any) -> Any:
    if type(r) is list and len(r) == 1 and type(r[0]) is dict:
        return r[0].get("e")
    return "unexpected jq output"


def _row_of(r: Any, n: int) -> Any:
    """A unit's result: its values (list), _FILTERED, a message (str), or None (error / odd shape)."""
    if type(r) is not list or len(r) != 1:
        return None
    v = r[0]
    if type(v) is list:
        return v if len(v) == n else None
    if v is False:
        return _FILTERED
    if type(v) is dict:
        if "q" in v:
            return f"{QUERY_FIELD} returned {_ARTICLE.get(v['q'], v['q'])}, not a boolean"
        if "p" in v:
            return _unreadable(v["p"])
    return None
