"""Which top-level fields of its input a jq expression can read.

Used to hand jq only the fields a mapping reads (``{"name": ..., "tags": ...}`` instead of a
5 KB API object): parsing its input is most of jq's cost. The analysis is deliberately conservative:
:func:`input_fields` returns None ("may read the whole input") for anything it does not fully
understand, and the caller then sends whole items. It only has to be right when it returns a set.

The input (the *root*) may only be used through field access (``.a``, ``."a"``, ``.["a"]``, ``{a}``).
Everything else applied to the root - a bare ``.``, ``..``, ``.[]``, a dynamic key, assignment, a
function call other than a few that ignore their input - makes the answer None. Once a value has
been taken from the root (right of ``|``, after ``.a``, inside ``map(...)`` applied to it, the
accumulator of ``reduce``, the message in ``catch``), ``.`` no longer refers to the root and
anything goes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["input_fields"]


class _Unsafe(Exception):
    pass


class _Tok(NamedTuple):
    kind: str  # field, str, num, var, ident, fmt, op, dot, dotdot, dotbracket
    text: str
    parts: tuple[list[_Tok], ...] = ()  # str / field-with-string: interpolated expressions
    interpolated: bool = False


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPS = sorted(
    [
        "?//",
        "|=",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "//=",
        "==",
        "!=",
        "<=",
        ">=",
        "//",
        "|",
        ",",
        "+",
        "-",
        "*",
        "/",
        "%",
        "=",
        "<",
        ">",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ":",
        ";",
        "?",
    ],
    key=len,
    reverse=True,
)
_ASSIGN = {"=", "|=", "+=", "-=", "*=", "/=", "%=", "//="}
_BINARY = {"//", "or", "and", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", ","}
_KEYWORDS = {
    "def",
    "as",
    "if",
    "then",
    "elif",
    "else",
    "end",
    "reduce",
    "foreach",
    "try",
    "catch",
    "label",
    "import",
    "include",
    "and",
    "or",
    "__loc__",
}
# Builtins that do not read their input themselves, with the arity and, per argument, whether it is
# evaluated on the call's input (True) or on something derived from it (False).
_ROOT_SAFE_CALLS: dict[tuple[str, int], tuple[bool, ...]] = {
    ("null", 0): (),
    ("true", 0): (),
    ("false", 0): (),
    ("empty", 0): (),
    ("now", 0): (),
    ("infinite", 0): (),
    ("nan", 0): (),
    ("env", 0): (),
    ("error", 1): (True,),
    ("first", 1): (True,),
    ("last", 1): (True,),
    ("isempty", 1): (True,),
    ("limit", 2): (True, True),
    ("range", 1): (True,),
    ("range", 2): (True, True),
    ("range", 3): (True, True, True),
    ("any", 2): (True, False),
    ("all", 2): (True, False),
}


# --------------------------------------------------------------------------- lexer


def _lex(src: str, pos: int, until_paren: bool) -> tuple[list[_Tok], int]:
    """Tokens from ``pos``; with ``until_paren``, stop after the ``)`` closing an interpolation."""
    toks: list[_Tok] = []
    depth = 0
    n = len(src)
    while pos < n:
        c = src[pos]
        if c.isspace():
            pos += 1
            continue
        if c == "#":
            end = src.find("\n", pos)
            end = n if end < 0 else end
            if "\\" in src[pos:end]:
                raise _Unsafe  # jq 1.7.1 continues such comments on the next line
            pos = end
            continue
        if c == '"':
            tok, pos = _lex_string(src, pos)
            toks.append(tok)
            continue
        if c == ".":
            m = _NUM.match(src, pos)
            if m:
                toks.append(_Tok("num", m.group(0)))
                pos = m.end()
                continue
            if src.startswith("..", pos):
                toks.append(_Tok("dotdot", ".."))
                pos += 2
                continue
            m = _IDENT.match(src, pos + 1)
            if m:
                toks.append(_Tok("field", m.group(0)))
                pos = m.end()
                continue
            if pos + 1 < n and src[pos + 1] == '"':
                tok, pos = _lex_string(src, pos + 1)
                toks.append(_Tok("field", tok.text, tok.parts, tok.interpolated))
                continue
            if pos + 1 < n and src[pos + 1] == "[":
                toks.append(_Tok("dotbracket", ".["))
                depth += 1
                pos += 2
                continue
            toks.append(_Tok("dot", "."))
            pos += 1
            continue
        if c == "$":
            m = _IDENT.match(src, pos + 1)
            if not m:
                raise _Unsafe
            toks.append(_Tok("var", m.group(0)))
            pos = m.end()
            continue
        if c == "@":
            m = _IDENT.match(src, pos + 1)
            if not m:
                raise _Unsafe
            toks.append(_Tok("fmt", m.group(0)))
            pos = m.end()
            continue
        m = _NUM.match(src, pos)
        if m and c.isdigit():
            toks.append(_Tok("num", m.group(0)))
            pos = m.end()
            continue
        m = _IDENT.match(src, pos)
        if m:
            if src.startswith("::", m.end()):
                raise _Unsafe  # module-qualified names
            toks.append(_Tok("ident", m.group(0)))
            pos = m.end()
            continue
        for op in _OPS:
            if src.startswith(op, pos):
                break
        else:
            raise _Unsafe
        if op in "([{":
            depth += 1
        elif op in ")]}":
            if depth == 0 and until_paren and op == ")":
                return toks, pos + 1
            depth -= 1
        toks.append(_Tok("op", op))
        pos += len(op)
    if until_paren:
        raise _Unsafe
    return toks, pos


def _lex_string(src: str, pos: int) -> tuple[_Tok, int]:
    """A string literal at ``src[pos] == '"'``; interpolations become token lists."""
    pos += 1
    text: list[str] = []
    parts: list[list[_Tok]] = []
    n = len(src)
    while pos < n:
        c = src[pos]
        if c == '"':
            return _Tok("str", "".join(text), tuple(parts), bool(parts)), pos + 1
        if c == "\\":
            if pos + 1 >= n:
                raise _Unsafe
            nxt = src[pos + 1]
            if nxt == "(":
                sub, pos = _lex(src, pos + 2, until_paren=True)
                parts.append(sub)
                continue
            if nxt == "u":
                text.append(chr(int(src[pos + 2 : pos + 6], 16)))
                pos += 6
                continue
            text.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(nxt, nxt))
            pos += 2
            continue
        text.append(c)
        pos += 1
    raise _Unsafe


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0
        self.fields: set[str] = set()

    # -- token helpers

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.kind in ("op", "ident") and t.text == text

    def take(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise _Unsafe
        self.i += 1
        return t

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise _Unsafe
        self.i += 1

    # -- grammar (root: whether `.` is the analysed input here)

    def pipe(self, root: bool) -> None:
        if self.at("def") or self.at("import") or self.at("include"):
            raise _Unsafe  # user functions can shadow the builtins trusted below
        if self.at("label"):
            self.take()
            if self.take().kind != "var":
                raise _Unsafe
            self.expect("|")
            self.pipe(root)
            return
        self.binary(root)
        if self.at("|"):
            self.take()
            self.pipe(False)

    def binary(self, root: bool) -> None:
        self.unary(root)
        while True:
            t = self.peek()
            if t is None or t.kind not in ("op", "ident"):
                return
            if t.text in _ASSIGN or t.text == "?//":
                raise _Unsafe
            if t.text not in _BINARY:
                return
            self.take()
            self.unary(root)

    def unary(self, root: bool) -> None:
        if self.at("-"):
            self.take()
        self.postfix(root)

    def postfix(self, root: bool, *, binding: bool = True) -> None:
        """A term and its suffixes. ``binding=False`` for the source term of reduce/foreach, whose
        ``as`` belongs to the reduce."""
        self.term(root)
        while True:
            t = self.peek()
            if t is None:
                return
            if t.kind == "field":
                self.take()
                self.string_parts(t, root)
            elif t.kind == "dotbracket" or (t.kind == "op" and t.text == "["):
                self.take()
                self.index(root)
            elif t.kind == "op" and t.text == "?":
                self.take()
            elif binding and t.kind == "ident" and t.text == "as":
                self.take()
                if self.take().kind != "var":
                    raise _Unsafe  # destructuring patterns
                self.expect("|")
                self.pipe(root)
                return
            else:
                return

    def index(self, root: bool) -> None:
        """After ``[`` applied to a value that is not the root: index, slice or iteration."""
        if self.at("]"):
            self.take()
            return
        if not self.at(":"):
            self.pipe(root)
        if self.at(":"):
            self.take()
            if not self.at("]"):
                self.pipe(root)
        self.expect("]")

    def string_parts(self, t: _Tok, root: bool) -> None:
        for part in t.parts:
            sub = _Parser(part)
            sub.pipe(root)
            if sub.peek() is not None:
                raise _Unsafe
            self.fields |= sub.fields

    def term(self, root: bool) -> None:
        t = self.take()
        k = t.kind
        if k == "field":
            if root:
                if t.interpolated:
                    raise _Unsafe
                self.fields.add(t.text)
            else:
                self.string_parts(t, root)
        elif k in ("dot", "dotdot"):
            if root:
                raise _Unsafe
        elif k == "dotbracket":
            if root:
                nxt, close = self.peek(), self.peek(1)
                if nxt is None or nxt.kind != "str" or nxt.interpolated or close is None or close.text != "]":
                    raise _Unsafe
                self.fields.add(nxt.text)
                self.i += 2
            else:
                self.index(root)
        elif k == "num" or k == "var":
            pass
        elif k == "str":
            self.string_parts(t, root)
        elif k == "fmt":
            nxt = self.peek()
            if nxt is not None and nxt.kind == "str":
                self.take()
                self.string_parts(nxt, root)
            elif root:
                raise _Unsafe
        elif k == "op":
            self.bracketed(t.text, root)
        elif k == "ident":
            self.keyword_or_call(t.text, root)
        else:
            raise _Unsafe

    def bracketed(self, op: str, root: bool) -> None:
        if op == "(":
            self.pipe(root)
            self.expect(")")
        elif op == "[":
            if not self.at("]"):
                self.pipe(root)
            self.expect("]")
        elif op == "{":
            self.object(root)
        else:
            raise _Unsafe

    def object(self, root: bool) -> None:
        while not self.at("}"):
            t = self.take()
            if t.kind == "var":
                pass
            elif t.kind == "ident" or t.kind == "str":
                if t.kind == "str":
                    self.string_parts(t, root)
                if not self.at(":"):  # {a} and {"a"} read .a
                    if root:
                        if t.interpolated:
                            raise _Unsafe
                        self.fields.add(t.text)
            elif t.kind == "op" and t.text == "(":
                self.pipe(root)
                self.expect(")")
                if not self.at(":"):
                    raise _Unsafe
            else:
                raise _Unsafe
            if self.at(":"):
                self.take()
                self.object_value(root)
            if self.at(","):
                self.take()
            elif not self.at("}"):
                raise _Unsafe
        self.take()

    def object_value(self, root: bool) -> None:
        """``ExpD``: terms joined by ``|`` (unary minus allowed)."""
        self.unary(root)
        while self.at("|"):
            self.take()
            self.unary(False)
            root = False

    def keyword_or_call(self, name: str, root: bool) -> None:
        if name == "if":
            self.pipe(root)
            self.expect("then")
            self.pipe(root)
            while self.at("elif"):
                self.take()
                self.pipe(root)
                self.expect("then")
                self.pipe(root)
            if not self.at("else"):
                if root:
                    raise _Unsafe  # `if c then x end` outputs the input itself
            else:
                self.take()
                self.pipe(root)
            self.expect("end")
        elif name == "try":
            self.postfix(root)
            if self.at("catch"):
                self.take()
                self.postfix(False)
        elif name in ("reduce", "foreach"):
            self.postfix(root, binding=False)
            self.expect("as")
            if self.take().kind != "var":
                raise _Unsafe
            self.expect("(")
            self.pipe(root)
            self.expect(";")
            self.pipe(False)
            if name == "foreach" and self.at(";"):
                self.take()
                self.pipe(False)
            self.expect(")")
        elif name in _KEYWORDS:
            raise _Unsafe
        else:
            self.call(name, root)

    def call(self, name: str, root: bool) -> None:
        if self.at("("):
            self.take()
            # Parse the arguments into sub-parsers lazily: we need the arity first.
            start = self.i
            depth = 0
            bounds: list[tuple[int, int]] = []
            j = start
            while True:
                t = self.toks[j] if j < len(self.toks) else None
                if t is None:
                    raise _Unsafe
                if t.kind in ("op", "dotbracket") and t.text in ("(", "[", "{", ".["):
                    depth += 1
                elif t.kind == "op" and t.text in (")", "]", "}"):
                    if depth == 0:
                        bounds.append((start, j))
                        break
                    depth -= 1
                elif t.kind == "op" and t.text == ";" and depth == 0:
                    bounds.append((start, j))
                    start = j + 1
                j += 1
            arg_roots: tuple[bool, ...]
            if root:
                spec = _ROOT_SAFE_CALLS.get((name, len(bounds)))
                if spec is None:
                    raise _Unsafe
                arg_roots = spec
            else:
                arg_roots = (False,) * len(bounds)
            for (a, b), arg_root in zip(bounds, arg_roots, strict=True):
                sub = _Parser(self.toks[a:b])
                sub.pipe(arg_root)
                if sub.peek() is not None:
                    raise _Unsafe
                self.fields |= sub.fields
            self.i = j + 1
        elif root and (name, 0) not in _ROOT_SAFE_CALLS:
            raise _Unsafe


def input_fields(expr: str) -> frozenset[str] | None:
    """The top-level fields ``expr`` may read from its input, or None if it may read all of it."""
    try:
        toks, _ = _lex(expr, 0, until_paren=False)
        p = _Parser(toks)
        p.pipe(True)
        if p.peek() is not None:
            return None
    except (_Unsafe, IndexError, ValueError):
        return None
    return frozenset(p.fields)
