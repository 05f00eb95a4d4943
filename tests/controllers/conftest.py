"""The controller suite runs against a `cluster` fixture. Today that is the embedded store; a
Kubernetes backend (a real API server with the CRDs installed) can be added as another parameter
without touching the tests, which use only the `Cluster` protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdi.cluster.protocol import Cluster
from cdi.embedded import EmbeddedCluster


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture(params=["embedded"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    assert request.param == "embedded"
    async with EmbeddedCluster(tmp_path / "store.db") as store:
        yield store


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()
