"""Compile jq once, with errors that name the field and quote jq's message.

Every program is compiled behind :data:`~httpsync.api.jqsafety.JQ_PRELUDE`: ``$ENV`` is ``{}`` and
the builtins that read the environment, the input stream or files are shadowed, whatever the
validation let through (the models refuse them already, naming the field).
"""

from __future__ import annotations

import functools
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
