"""Plain data types shared by the engine, the sinks, the CLI and the controller (and
:class:`EndpointResult`, the result of one sync of one mapping, defined with the status models).

Entities are plain dicts (fast to build by the thousand, JSON-ready):
``{"identifier", "blueprint", "title", "team", "icon", "properties": {}, "relations": {}}``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypedDict

# The result of a sync is a pydantic model (the resource status is generated from it); it is part of
# the engine's vocabulary all the same.
from httpsync.api.models import EndpointResult as EndpointResult


class Entity(TypedDict, total=False):
    identifier: str
    blueprint: str
    title: str | None
    team: Any
    icon: str | None
    properties: dict[str, Any]
    relations: dict[str, Any]


class EntityRef(NamedTuple):
    blueprint: str
    identifier: str


class SecretResolver(Protocol):
    """Gives the value of one key of a Secret in the resource's namespace.

    Raises :class:`httpsync.errors.SecretError` with a message naming the Secret and key
    (never a value) when either is missing.
    """

    async def get(self, name: str, key: str) -> str: ...
