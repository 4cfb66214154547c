"""jq builtins a mapping may not use: they read the operator's environment, its input stream, files
on its disk, or write to its stderr and end it.

The people who write mappings are not the people who run the operator: ``$ENV.PORT_CLIENT_SECRET``
or ``env.X`` would copy the operator's own credentials into the catalog. :func:`refused_builtins`
scans a jq program's tokens (string literals and comments skipped the way jq 1.7 reads them) and
names what it uses of :data:`REFUSED_CALLS` and :data:`REFUSED_VARIABLES`. Field access (``.env``,
``."env"``), object keys (``{env: 1}``, ``{env}``, which read ``.env``) and strings (``"env"``) are
fine. The check is deliberately eager: a user function called ``env`` is refused too.

The engine also compiles every program with these builtins shadowed (:data:`JQ_PRELUDE`) and runs
jq in worker processes with an empty environment: the scan is what tells the user, not the only wall.
"""

from __future__ import annotations

# Builtins (called by name) that read the environment, the input stream or files, or end the process.
REFUSED_CALLS = frozenset(
    {
        "env",  # the process environment
        "input",  # the input stream (other items, or whatever jq is fed)
        "inputs",
        "input_filename",
        "input_line_number",
        "debug",  # writes to the operator's stderr
        "stderr",
        "halt",  # ends the process
        "halt_error",
        "get_search_list",  # module search paths, files on disk
        "get_jq_origin",
        "get_prog_origin",
        "modulemeta",
        "import",  # modules and JSON data read from disk
        "include",
    }
)
REFUSED_VARIABLES = frozenset({"ENV", "__loc__", "__prog_args"})

_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT = _IDENT_START | frozenset("0123456789")

# Compiled in front of every program: the refused builtins shadowed, $ENV bound to {}.
# (`$__loc__` is syntax and cannot be shadowed; it only tells the line number.)
JQ_PRELUDE = (
    "def env: {}; "
    'def input: error("input is not allowed in httpsync mappings"); '
    'def inputs: error("inputs is not allowed in httpsync mappings"); '
    "def input_filename: null; def input_line_number: 0; "
    "def debug: .; def debug(m): .; def stderr: .; "
    'def halt: error("halt is not allowed in httpsync mappings"); '
    'def halt_error: error("halt_error is not allowed in httpsync mappings"); '
    'def halt_error(c): error("halt_error is not allowed in httpsync mappings"); '
    "def get_search_list: []; def get_jq_origin: null; def get_prog_origin: null; "
    'def modulemeta: error("modulemeta is not allowed in httpsync mappings"); '
    "{} as $ENV | "
)


def _module_sep(expr: str, k: int) -> bool:
    """``::`` of a module-qualified name (``m::f``) at ``k``."""
    return expr.startswith("::", k) and k + 2 < len(expr) and expr[k + 2] in _IDENT_START


def refused_builtins(expr: str) -> list[str]:
    """The refused builtins ``expr`` uses (``env``, ``$ENV``, ...), in order of first use."""
    found: list[str] = []

    def add(name: str) -> None:
        if name not in found:
            found.append(name)

    n = len(expr)
    # Context stack: ("code", kind, key_position) where kind is "(" "[" "{" "interp" or "top";
    # ("str",) inside a string literal.
    stack: list[list[object]] = [["code", "top", False]]
    prev_dot = False  # the previous code character was a lone "."
    after_def = False  # the previous token was `def`
    i = 0
    while i < n:
        top = stack[-1]
        c = expr[i]
        if top[0] == "str":
            if c == "\\":
                if i + 1 < n and expr[i + 1] == "(":
                    stack.append(["code", "interp", False])
                    i += 2
                    continue
                i += 2
                continue
            if c == '"':
                stack.pop()
            i += 1
            continue
        # code
        if c == "#":  # a comment: jq 1.7.1 lets a backslash escape the next character, newline included
            i += 1
            while i < n and expr[i] != "\n":
                if expr[i] == "\\":
                    i += 1
                    if i < n and expr[i] == "\r" and i + 1 < n and expr[i + 1] == "\n":
                        i += 1
                i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if c == '"':
            stack.append(["str"])
            prev_dot = after_def = False
            i += 1
            continue
        if c == "$":
            j = i + 1
            while j < n and expr[j].isspace():
                j += 1
            k = j
            while k < n and (expr[k] in _IDENT or (expr.startswith("::", k) and k + 2 < n)):
                k += 2 if expr.startswith("::", k) else 1
            name = expr[j:k]
            for part in name.split("::"):
                if part in REFUSED_VARIABLES:
                    add(f"${part}")
            prev_dot = after_def = False
            i = max(k, i + 1)
            continue
        if c in _IDENT_START:
            k = i
            while k < n and (expr[k] in _IDENT or _module_sep(expr, k)):
                k += 2 if expr.startswith("::", k) else 1
            name = expr[i:k]
            j = k
            while j < n and expr[j].isspace():
                j += 1
            is_key = top[1] == "{" and top[2] and (j >= n or expr[j] in ":,}") and not expr.startswith("::", j)
            if not prev_dot and not after_def and not is_key:
                for part in name.split("::"):
                    if part in REFUSED_CALLS:
                        add(part)
            after_def = name == "def"
            prev_dot = False
            i = k
            continue
        if c.isdigit():
            while i < n and (expr[i].isalnum() or expr[i] == "."):
                i += 1
            prev_dot = after_def = False
            continue
        if c == ".":
            if i + 1 < n and expr[i + 1] == ".":
                prev_dot = False
                i += 2
                continue
            prev_dot = i + 1 < n and expr[i + 1] in _IDENT_START
            after_def = False
            i += 1
            continue
        if c == "@":  # a format (@base64, @sh): not a call
            i += 1
            while i < n and expr[i] in _IDENT:
                i += 1
            prev_dot = after_def = False
            continue
        prev_dot = after_def = False
        if c in "([{":
            stack.append(["code", c, c == "{"])
        elif c in ")]}":
            if len(stack) > 1:
                stack.pop()
        elif c == "," and top[1] == "{":
            top[2] = True
        elif c == ":" and top[1] == "{":
            top[2] = False
        i += 1
    return found


def refused_message(expr: str) -> str | None:
    """A message saying what ``expr`` uses that httpsync refuses, or None."""
    names = refused_builtins(expr)
    if not names:
        return None
    shown = ", ".join(names)
    return (
        f"uses {shown}, which httpsync does not allow in jq (it would read the operator's environment, "
        "input stream or files, or write to its stderr or stop it); remove it"
    )


def check_jq(expr: str | None) -> str | None:
    """A pydantic validator: ``expr`` unchanged, or ValueError saying what is refused."""
    if expr is None:
        return None
    message = refused_message(expr)
    if message is not None:
        raise ValueError(message)
    return expr
