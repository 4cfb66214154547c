"""Keep secret values out of every message the engine produces.

A secret is masked in every spelling it can take on the wire or in a message, whatever the
encoder: each of its characters may appear raw, percent-encoded (its UTF-8 bytes, either hex
case; ``+`` for a space), JSON-escaped (``\\uXXXX``, ``\\"``, ``\\/``...), HTML-escaped, or one of
those encoded once more (a JSON body echoing a query string), and whitespace may be collapsed or
dropped (as message formatting and URL parsers do). Mixed spellings are caught too: a server that
re-encodes only some characters of a query string. Basic auth's base64 ``user:pass`` is
registered by the auth classes, which know the pair.

Log records of the HTTP libraries (``httpx``'s ``HTTP Request: GET ...?api_key=...`` line, and
``httpcore``'s) are redacted by a filter on their loggers, whatever formatter the process uses.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
import threading
from urllib.parse import unquote, unquote_plus

_MASK = "***"
MIN_SECRET_LENGTH = 4
WHITESPACE_RUN = 8  # the most whitespace one whitespace character of a secret may have become
_lock = threading.Lock()
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")

# The loggers of the HTTP libraries the engine uses; a logger's filters see only the records
# created on it (not those propagated from its children), so each one is named.
HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",
    "aiohttp.internal",
)


def _percent(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


def _json(text: str) -> str:
    return json.dumps(text)[1:-1]


def _first_forms(c: str) -> set[str]:
    forms = {c, _percent(c), _json(c), json.dumps(c, ensure_ascii=False)[1:-1], html.escape(c, quote=True)}
    forms |= {f"&#{ord(c)};", f"&#x{ord(c):x};"} if not c.isalnum() else set()
    if c == " ":
        forms.add("+")
    if c == "/":
        forms.add("\\/")
    return forms


@functools.lru_cache(maxsize=4096)
def _forms(c: str) -> tuple[str, ...]:
    """Every spelling of the character ``c``, one or two encodings deep."""
    first = _first_forms(c)
    forms = set(first)
    for f in first:
        if f != c:
            forms |= {_percent(f), _json(f), html.escape(f, quote=True), f.replace("%", "%25")}
    return tuple(sorted(forms, key=len, reverse=True))


@functools.lru_cache(maxsize=4096)
def _group(c: str, optional: bool) -> tuple[str, int]:
    """The regex of the spellings of ``c`` and the longest text it matches."""
    forms = _forms(c)
    alternatives = "|".join(re.escape(f) for f in forms)
    longest = max(len(f) for f in forms)
    if optional:
        return f"(?:{alternatives}|\\s{{1,{WHITESPACE_RUN}}})?", longest + WHITESPACE_RUN
    return f"(?:{alternatives})", longest


class _Secret:
    """One registered value: its anchor (its longest alphanumeric run, lower-cased, which every
    spelling keeps; "" if none), the longest text it can have become, and its pattern, compiled on
    first use (registering a long token costs no regex compilation on the event loop)."""

    __slots__ = ("_pattern", "_source", "anchor", "longest", "value")

    def __init__(self, value: str) -> None:
        solid = sum(not c.isspace() for c in value)
        groups = [_group(c, c.isspace() and solid >= MIN_SECRET_LENGTH) for c in value]
        runs = _ALNUM_RUN.findall(value)
        self.value = value
        self.anchor = max(runs, key=len).lower() if runs else ""
        self.longest = sum(n for _, n in groups)
        self._source = "".join(g for g, _ in groups)
        self._pattern: re.Pattern[str] | None = None

    @property
    def pattern(self) -> re.Pattern[str]:
        if self._pattern is None:
            self._pattern = re.compile(self._source, re.IGNORECASE)
        return self._pattern


def _compile(value: str) -> _Secret:
    return _Secret(value)


_secrets: dict[str, _Secret] = {}
_ordered: tuple[_Secret, ...] = ()  # longest first: a secret containing another is masked whole
_longest = 0
# With many secrets (every tenant's, every token renewed), the candidates for a text are found
# through the first GRAM characters of their anchors instead of one scan per secret.
GRAM = 4
INDEX_FROM = 32  # secrets registered before the index is used
_by_gram: dict[str, tuple[_Secret, ...]] = {}
_unindexed: tuple[_Secret, ...] = ()  # anchors shorter than GRAM: always tried
_rank: dict[str, int] = {}  # position in _ordered


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` masks it, in any of its spellings, anywhere
    it appears.

    Values shorter than 4 characters are not registered: masking them would mangle ordinary text.
    """
    global _ordered, _longest, _by_gram, _unindexed, _rank
    if not value or len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    install_log_filter()
    # A secret that looks percent-encoded may be shown decoded (URL normalizers decode %2F...).
    spelled = {value, unquote(value), unquote_plus(value)}
    compiled = [_compile(v) for v in spelled if len(v) >= MIN_SECRET_LENGTH]
    with _lock:
        for c in compiled:
            _secrets.setdefault(c.value, c)
        _secrets[value] = compiled[0] if compiled[0].value == value else _compile(value)
        ordered = tuple(sorted(_secrets.values(), key=lambda s: len(s.value), reverse=True))
        by_gram: dict[str, list[_Secret]] = {}
        for s in ordered:
            if len(s.anchor) >= GRAM:
                by_gram.setdefault(s.anchor[:GRAM], []).append(s)
        _by_gram = {k: tuple(v) for k, v in by_gram.items()}
        _unindexed = tuple(s for s in ordered if len(s.anchor) < GRAM)
        _rank = {s.value: i for i, s in enumerate(ordered)}
        _ordered = ordered
        _longest = max(_longest, *(c.longest for c in compiled))


def longest_secret() -> int:
    """The length of the longest text a registered secret can have become (0 when there is none)."""
    return _longest


def _candidates(lowered: str) -> tuple[_Secret, ...] | list[_Secret]:
    """The secrets worth trying on ``lowered``: all of them, or, when one scan per secret would cost
    more than indexing the text's grams (many secrets, a short text), those whose anchor starts with
    one of its grams (measured: a scan costs ~0.3 us + 0.3 ns a character, a gram ~0.12 us)."""
    ordered = _ordered
    n, length = len(ordered), len(lowered)
    if n <= INDEX_FROM or n * (3000 + 3 * length) <= 1200 * length:
        return ordered
    by_gram = _by_gram
    grams = {lowered[i : i + GRAM] for i in range(len(lowered) - GRAM + 1)}
    found = [s for g in grams & by_gram.keys() for s in by_gram[g]]
    found += _unindexed
    found.sort(key=lambda s: _rank.get(s.value, 0))
    return found


def redact(text: str) -> str:
    if not text or not _ordered:
        return text
    lowered = text.lower()
    for s in _candidates(lowered):
        if s.anchor in lowered and s.pattern.search(text):
            text = s.pattern.sub(_MASK, text)
            lowered = text.lower()
    return text


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks every registered secret in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingFilter(logging.Filter):
    """Masks the secrets of a record's message (its arguments merged in) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _ordered:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to the handler's error path
                return True
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_FILTER = RedactingFilter()
_installed = False


def install_log_filter() -> None:
    """Put :class:`RedactingFilter` on the HTTP libraries' loggers (once; called on the first
    registered secret, so every process that holds a secret has it)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
