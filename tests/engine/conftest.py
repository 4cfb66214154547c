"""Fixtures the engine tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from httpsync.sinks.catalog import Catalog


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    """An embedded catalog (sink and state) in a fresh file."""
    c = await Catalog.open(tmp_path / "c.db")
    yield c
    await c.aclose()
