"""Pytest fixtures of the Port API emulator. Registered in ``tests/conftest.py`` with
``pytest_plugins`` (or imported by a test package's conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from httpsync.sinks.port import PortSink, clear_shared
from tests.portapi import server


@pytest.fixture
async def portapi() -> AsyncIterator[server.PortApi]:
    """The Port emulator, fresh for each test, on 127.0.0.1 and a free port."""
    clear_shared()  # tokens and pacers are shared per process: none from another test
    api = server.PortApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def port_sink(api: server.PortApi, **options: Any) -> PortSink:
    """A PortSink for the emulator with its credentials and tiny retry waits (for fast tests)."""
    options.setdefault("backoff", 0.001)
    options.setdefault("timeout", 5)
    client_id = options.pop("client_id", server.CLIENT_ID)
    client_secret = options.pop("client_secret", server.CLIENT_SECRET)
    return PortSink(api.url, client_id, client_secret, **options)
