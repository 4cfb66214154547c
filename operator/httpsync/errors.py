"""Errors the engine reports. Each carries a CamelCase ``reason`` (used for conditions and the CLI)
and whether a human must act (``stalled``: retrying alone will not fix it).

Messages are written for the user and never contain secret values: anything built from
server responses or exceptions goes through :func:`httpsync.http.redact.redact` first, and every
message is redacted once more when the error is made (a registered secret in any of its spellings).
"""

from __future__ import annotations

from httpsync.http.redact import redact


class EngineError(Exception):
    reason: str = "SyncFailed"
    stalled: bool = False

    def __init__(self, message: str, *, reason: str | None = None, stalled: bool | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if stalled is not None:
            self.stalled = stalled

    def __str__(self) -> str:
        return self.message


class ConfigError(EngineError):
    """The resource itself is wrong (invalid jq, bad URL, unknown field): a human must fix it."""

    reason = "InvalidSpec"
    stalled = True


class InvalidJqError(ConfigError):
    reason = "InvalidJq"


class SecretError(EngineError):
    """A referenced Secret or key is missing."""

    reason = "SecretNotFound"
    stalled = True


class DestinationDeniedError(ConfigError):
    reason = "DestinationDenied"


class AuthError(EngineError):
    """The API refused our credentials (401/403 after a refresh)."""

    reason = "AuthenticationFailed"
    stalled = True


class HttpStatusError(EngineError):
    reason = "HttpError"


class ConnectionFailedError(EngineError):
    reason = "ConnectionFailed"


class TimeoutFailedError(EngineError):
    reason = "Timeout"


class ResponseFormatError(EngineError):
    """The response is not JSON, or the dataPath does not find an array."""

    reason = "InvalidResponse"


class ResponseTooDeepError(ResponseFormatError):
    """The response is nested deeper than httpsync reads (a hostile or broken API)."""

    reason = "ResponseTooDeep"


class DataPathError(ResponseFormatError):
    """The dataPath finds no array where the response is JSON: the mapping must change."""

    reason = "DataPathNotArray"
    stalled = True


class ResponseTooLargeError(EngineError):
    """A response body (after decompression) is larger than ``spec.maxResponseBytes``: the same request
    gives the same body, so the limit or the page size must change."""

    reason = "ResponseTooLarge"
    stalled = True


class PaginationError(EngineError):
    """Pagination loops (a repeated cursor, link or page) or exceeds maxPages: the same requests give
    the same loop again, so the pagination settings (or maxPages) must change."""

    reason = "PaginationLoop"
    stalled = True


class IncompleteFetchError(EngineError):
    """The pages ended before the total the API announced (``totalPath``): the data is incomplete, so
    nothing is deleted. Transient as a rule (items deleted while paging shift the offsets)."""

    reason = "IncompleteFetch"


class SyncInProgressError(EngineError):
    """Another sync of the same mapping holds its state (another ``httpsync sync`` on the same catalog,
    or the CLI and the operator on one state file): the second one does not run."""

    reason = "SyncInProgress"


class SinkError(EngineError):
    reason = "SinkFailed"
