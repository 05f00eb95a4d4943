"""Fixtures for the cluster tests: an `EmbeddedCluster` on a fresh SQLite file with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cluster.db"


@pytest.fixture
async def cluster(db_path: Path, clock: FakeClock) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(db_path, clock=clock, poll_interval=0.02) as opened:
        yield opened
