"""Fixtures for the pod runner tests: an `EmbeddedCluster` in tmp_path and a `PodRunner` with a fast
back-off, closed (every process killed) at the end of each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.runner import PodRunner

BACKOFF_BASE = 0.2
BACKOFF_CAP = 0.8


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "cluster.db", poll_interval=0.02) as opened:
        yield opened


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
async def runner(cluster: EmbeddedCluster, state_dir: Path) -> AsyncIterator[PodRunner]:
    pod_runner = PodRunner(cluster, state_dir, backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, retry_after=0.2)
    yield pod_runner
    await pod_runner.close()
