"""Fixtures for the runtime tests: a fake clock and an `EmbeddedCluster` on a fresh SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from tests.runtime.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cluster.db"


@pytest.fixture
async def cluster(db_path: Path, clock: FakeClock) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(db_path, clock=clock.now, poll_interval=0.02) as opened:
        yield opened
