"""Pytest fixtures of the test API. Registered in ``tests/conftest.py`` with
``pytest_plugins = ["tests.testapi.fixtures"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from httpsync.api.models import HttpEndpointMappingSpec, HttpSourceSpec, PaginationSpec
from httpsync.errors import SecretError
from tests.testapi import server


class StaticSecrets:
    """A :class:`httpsync.engine.types.SecretResolver` over a dict ``{secret: {key: value}}``."""

    def __init__(self, data: dict[str, dict[str, str]] | None = None) -> None:
        self.data = data if data is not None else default_secrets()
        self.reads: list[tuple[str, str]] = []

    async def get(self, name: str, key: str) -> str:
        self.reads.append((name, key))
        if name not in self.data:
            raise SecretError(f"Secret {name!r} not found")
        if key not in self.data[name]:
            raise SecretError(f"Secret {name!r} has no key {key!r}")
        return self.data[name][key]


def default_secrets() -> dict[str, dict[str, str]]:
    """One Secret per auth style of the test API, each with the default keys."""
    return {
        "bearer": {"token": server.BEARER_TOKEN},
        "apikey": {"apiKey": server.API_KEY},
        "basic": {"username": server.BASIC_USER, "password": server.BASIC_PASSWORD},
        "oauth": {"clientId": server.CLIENT_ID, "clientSecret": server.CLIENT_SECRET},
        "wrong": {
            "token": "wrong-token-value-1",
            "apiKey": "wrong-api-key-value-1",
            "clientId": server.CLIENT_ID,
            "clientSecret": "wrong-client-secret-1",
        },
    }


@pytest.fixture
async def testapi() -> AsyncIterator[server.TestApi]:
    """The test API, fresh for each test, on 127.0.0.1 and a free port."""
    api = server.TestApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
def secrets() -> StaticSecrets:
    return StaticSecrets()


# --------------------------------------------------------------------------- spec helpers


def source_spec(base_url: str, **fields: Any) -> HttpSourceSpec:
    """An HttpSourceSpec as a user writes it (camelCase), with tiny retry waits for fast tests."""
    data: dict[str, Any] = {
        "baseUrl": base_url,
        "retry": {"backoffSeconds": 0.001, "maxBackoffSeconds": 0.01, "maxRetryAfterSeconds": 0.3},
    }
    data.update(fields)
    return HttpSourceSpec.model_validate(data)


def mapping_spec(kind: str, **selector: Any) -> HttpEndpointMappingSpec:
    """An HttpEndpointMappingSpec for ``kind`` with the given selector fields (camelCase)."""
    return HttpEndpointMappingSpec.model_validate(
        {
            "sourceRef": {"name": "test-source"},
            "kind": kind,
            "selector": selector,
            "mappings": {"identifier": ".id | tostring", "blueprint": '"item"'},
        }
    )


def pagination_spec(**fields: Any) -> PaginationSpec:
    return PaginationSpec.model_validate(fields)
