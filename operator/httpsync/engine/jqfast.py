"""Pure-Python evaluation of the simple jq expressions most mappings consist of.

``.id``, ``.owner.email``, ``.a["x"]``, ``.tags[0]``, ``.id | tostring`` and literals (``"user"``,
``true``, ``42``) are evaluated here without jq, with results identical to what jq (through the
``jq`` Python binding) returns for the same Python value. The binding hands jq ``json.dumps(value)``
and converts jq's results back, which fixes a few rules this module reproduces:

- numbers come back as ``int`` when integral (``1.0`` -> ``1``) and ``float`` otherwise; an integer
  beyond +-2**53 stays exact, as jq 1.7 keeps an unmodified literal (the engine reads jq's results
  holding one as jq's own JSON text: :func:`httpsync.engine.jqutil.first_exact`);
- ``tostring`` of a number prints jq's preserved literal: ``str(int)`` for integers and the
  decimal "to-scientific-string" of ``repr(float)`` for floats (``1e-05`` -> ``0.00001``,
  ``1e+16`` -> ``1E+16``, ``1.0`` -> ``1.0``), which is exactly :class:`decimal.Decimal`'s ``str``;
- jq rejects strings holding lone UTF-16 surrogates, so such values are left to jq.

Anything outside the well-trodden cases (indexing a string, a non-finite float, ``tostring`` of an
array, an item that is not an object ...) raises :class:`Fallback`, and the caller evaluates that
item with real jq. The fast path therefore never has to reproduce jq's error messages.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jq

MAX_EXACT_INT = 2**53


class Fallback(Exception):
    """The value needs real jq (an error, or a case the fast path does not reproduce)."""


@dataclass(frozen=True, slots=True)
class SimpleExpr:
    """A path (``steps``, possibly empty for ``.``) optionally piped to ``tostring``, or a constant."""

    steps: tuple[str | int, ...] = ()
    tostring: bool = False
    is_const: bool = False
    const: Any = None


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_INT = re.compile(r"-?[0-9]+")
_TOSTRING = re.compile(r"\s*\|\s*tostring\s*$")
_LITERAL = re.compile(
    r'^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")$'
)


def parse_simple(expr: str) -> SimpleExpr | None:
    """The fast-path form of ``expr``, or None when it needs jq."""
    text = expr.strip()
    if _LITERAL.match(text):
        return _constant(text)
    tostring = False
    m = _TOSTRING.search(text)
    if m:
        tostring = True
        text = text[: m.start()].rstrip()
        if not text:
            return None
    steps = _parse_path(text)
    if steps is None:
        return None
    return SimpleExpr(steps=steps, tostring=tostring)


def _constant(text: str) -> SimpleExpr | None:
    try:
        value = jq.compile(text).input_value(None).first()
    except (ValueError, StopIteration):
        return None
    return SimpleExpr(is_const=True, const=value)


def _parse_path(text: str) -> tuple[str | int, ...] | None:
    """Steps of ``.a.b["c"][0]``; None if ``text`` is anything else."""
    if not text.startswith("."):
        return None
    if text == ".":
        return ()
    steps: list[str | int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ".":
            i += 1
            if i < n and text[i] == "[":
                continue  # `.a.["b"]` (jq 1.7+) or `.["b"]`
            m = _IDENT.match(text, i) or _STRING.match(text, i)
            if not m:
                return None
            token = m.group(0)
            steps.append(json.loads(token) if token.startswith('"') else token)
            i = m.end()
        elif ch == "[":
            m = _STRING.match(text, i + 1) or _INT.match(text, i + 1)
            if not m or m.end() >= n or text[m.end()] != "]":
                return None
            token = m.group(0)
            steps.append(json.loads(token) if token.startswith('"') else int(token))
            i = m.end() + 1
        else:
            return None
    return tuple(steps)


# --------------------------------------------------------------------------- evaluation


def walk(value: Any, steps: tuple[str | int, ...]) -> Any:
    """Follow ``steps`` like jq: null stays null, a missing key or index gives null."""
    for step in steps:
        if value is None:
            continue
        if type(step) is str:
            if type(value) is not dict:
                raise Fallback
            value = value.get(step)
        else:
            if type(value) is not list:
                raise Fallback
            idx = step if step >= 0 else step + len(value)  # type: ignore[operator]
            value = value[idx] if 0 <= idx < len(value) else None
    return value


def check_str(value: str) -> str:
    """A string jq can carry (no lone surrogates)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Fallback from None
    return value


def normalize(value: Any) -> Any:
    """``value`` as jq returns it through the binding (see the module docstring)."""
    t = type(value)
    if t is str:
        return check_str(value)
    if value is None or t is bool:
        return value
    if t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise Fallback
        return int(value) if value.is_integer() else value
    if t is list:
        return [normalize(v) for v in value]
    if t is dict:
        return {check_str(k): normalize(v) for k, v in value.items()}
    raise Fallback


def number_to_string(value: int | float) -> str:
    """jq's ``tostring`` of a number read from JSON text (its preserved literal)."""
    if type(value) is int:
        return str(value)
    if not math.isfinite(value):
        raise Fallback
    return str(Decimal(repr(value)))


def tostring(value: Any) -> str:
    """jq's ``tostring`` for scalars; arrays and objects are left to jq."""
    t = type(value)
    if t is str:
        return check_str(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return number_to_string(value)
    raise Fallback


def to_key(value: Any) -> Any:
    """What the mapper does to identifier and blueprint values: numbers become jq's ``tostring``."""
    t = type(value)
    if t is int or t is float:
        return number_to_string(value)
    return normalize(value)


# --------------------------------------------------------------------------- whole responses


def plain_path(expr: str) -> tuple[str | int, ...] | None:
    """The steps of ``expr`` when it is a plain path (``.items``, ``.meta.next``, ``.data[-1].id``),
    else None (``| tostring``, literals and anything else stay with jq)."""
    s = parse_simple(expr)
    if s is None or s.is_const or s.tostring:
        return None
    return s.steps


def _plain_str(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(value: Any) -> bool:
    """Whether jq, through the binding, gives back ``value`` unchanged (``==``): no string or key with
    a lone surrogate (jq refuses the whole input) and no NaN/Infinity (jq gives null/the largest
    double). Integers of any size are fine (jq 1.7 keeps an unmodified literal), and so are integral
    floats (``3.0``): jq gives ``3``, which equals ``3.0``."""
    t = type(value)
    if t is dict:
        for k in value:
            if not k.isascii() and not _plain_str(k):
                return False
        values: Any = value.values()
    elif t is list:
        values = value
    else:
        values = (value,)
    for v in values:
        tv = type(v)
        if tv is str:
            if not v.isascii() and not _plain_str(v):
                return False
        elif tv is float:
            if not math.isfinite(v):
                return False
        elif tv is dict or tv is list:
            if not _plain(v):
                return False
        elif v is not None and tv is not bool and tv is not int:
            return False
    return True


_last_checked: tuple[Any, bool] = (object(), False)


def plain_json(body: Any) -> bool:
    """Whether paths walked in Python over ``body`` (a decoded response) give what jq gives (see
    :func:`_plain`). The last answer is kept: the dataPath and the pagination paths of one page
    ask about the same body."""
    global _last_checked
    last = _last_checked
    if last[0] is body:
        return last[1]
    try:
        answer = _plain(body)
    except RecursionError:  # nested very deeply: jq takes it (it reads deeper than Python recurses)
        answer = False
    _last_checked = (body, answer)
    return answer
