"""Compile jq once, with errors that name the field and quote jq's message.

Every program is compiled behind :data:`~httpsync.api.jqsafety.JQ_PRELUDE`: ``$ENV`` is ``{}`` and
the builtins that read the environment, the input stream or files are shadowed, whatever the
validation let through (the models refuse them already, naming the field).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jq

from httpsync.api.jqsafety import JQ_PRELUDE, refused_message
from httpsync.errors import InvalidJqError

_BARE_PATH = re.compile(r"^[A-Za-z_@$][\w@$-]*(\.[A-Za-z_@$][\w@$-]*)*$")


def normalize_path(expr: str) -> str:
    """Accept Ocean's bare dot paths (``meta.after_cursor``) as jq (``.meta.after_cursor``).

    Anything already jq-looking (starting with ``.``, ``$``, a literal, a function) is returned as is.
    Keys with characters jq would not accept unquoted (``@odata.nextLink`` style) are quoted.
    """
    expr = expr.strip()
    if expr.startswith("@") and _BARE_PATH.match(expr):
        return f'.["{expr}"]'  # OData's literal key "@odata.nextLink"
    if _BARE_PATH.match(expr) and expr not in ("true", "false", "null", "empty"):
        parts = expr.split(".")
        return "".join(f".{p}" if re.fullmatch(r"[A-Za-z_]\w*", p) else f'."{p}"' for p in parts)
    return expr


def jq_error_line(e: BaseException, default: str = "error") -> str:
    """The first line of a jq error (the binding's messages can run over several lines)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else default


@functools.lru_cache(maxsize=4096)
def _compile(expr: str) -> Any:
    try:
        return jq.compile(f"{JQ_PRELUDE}({expr}\n)")
    except ValueError:
        jq.compile(expr)  # jq's message about the user's own text (columns and lines as written)
        raise


def compile_jq(expr: str, field: str) -> Any:
    """Compile ``expr`` (cached). ``field`` names the spec field for the error message,
    e.g. ``mappings.properties.email`` or ``selector.dataPath``."""
    refused = refused_message(expr)
    if refused is not None:
        raise InvalidJqError(f"{field}: jq {expr!r} {refused}")
    try:
        return _compile(expr)
    except ValueError as e:
        msg = jq_error_line(e, "syntax error")
        raise InvalidJqError(f"{field}: invalid jq {expr!r}: {msg}") from None


def json_type(value: Any) -> str:
    """jq's name for the JSON type of a Python value (for error messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------- exact integers out of jq

# The binding converts jq's results to Python through doubles, so an integer beyond 2**53 that jq
# 1.7 keeps as its literal (unmodified) comes back rounded. A text with a run of 16 digits (2**53
# has 16; a fraction's digits do not count) may hold one: its results are then taken as jq's own
# JSON text (``tojson`` prints the preserved literal) and converted like the binding converts values.
_LONG_DIGITS = re.compile(r"(?<![.0-9])[0-9]{16}")
_MAX_DOUBLE = 1.7976931348623157e308


_TO_ZEROS = bytes.maketrans(b"0123456789", b"0000000000")
_SIXTEEN = b"0" * 16


def may_hold_large_int(text: str) -> bool:
    """Whether JSON ``text`` may hold an integer beyond 2**53 (a run of 16 digits: never misses one).
    The bytes are looked at first (C speed, ~0.3 us per item); the regex only runs on a candidate."""
    if _SIXTEEN not in text.encode("utf-8", "surrogatepass").translate(_TO_ZEROS):
        return False
    return _LONG_DIGITS.search(text) is not None


@functools.lru_cache(maxsize=1024)
def _as_json_text(program: str, collect: bool) -> Any:
    return jq.compile(f"[({program}\n)] | tojson" if collect else f"first(({program}\n)) | tojson")


def _like_binding(value: Any) -> Any:
    """A value decoded from jq's JSON text as the binding gives it: integral numbers as ``int``
    (``1.0`` -> ``1``), +-Infinity as the largest double; integers stay exact."""
    t = type(value)
    if t is float:
        if value != value:
            return None
        if value in (float("inf"), float("-inf")):
            return _MAX_DOUBLE if value > 0 else -_MAX_DOUBLE
        return int(value) if value.is_integer() else value
    if t is list:
        return [_like_binding(v) for v in value]
    if t is dict:
        return {k: _like_binding(v) for k, v in value.items()}
    return value


def first_exact(program: Any, text: str) -> Any:
    """``program.input_text(text).first()``, with every integer literal jq kept (beyond 2**53
    included) exact."""
    if not may_hold_large_int(text):
        return program.input_text(text).first()
    return _like_binding(json.loads(_as_json_text(program.program_string, False).input_text(text).first()))


def all_exact(program: Any, value: Any) -> list[Any]:
    """``program.input_value(value).all()``, with every integer literal jq kept exact."""
    text = json.dumps(value)
    if not may_hold_large_int(text):
        return program.input_text(text).all()  # type: ignore[no-any-return]
    return _like_binding(json.loads(_as_json_text(program.program_string, True).input_text(text).first()))  # type: ignore[no-any-return]
