"""Keep secret values out of every message the engine produces."""

from __future__ import annotations

import logging
import threading

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` masks it anywhere it appears.

    Values shorter than 4 characters are not registered: masking them would mangle ordinary text.
    """
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, _MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks every registered secret in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
