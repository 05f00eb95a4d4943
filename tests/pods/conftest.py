"""Fixtures for the pod runner tests: an `EmbeddedCluster` in tmp_path and a `PodRunner` with a fast
back-off, closed (every process killed) at the end of each test.

The runner starts containers as processes unless a test is parametrized over `pod_runtime`
(`support.both_runtimes`): its "container" variant runs them with podman in the project's image,
built (or found built) by scripts/image.sh once per session, and is skipped, with the reason, where
podman cannot run or the image cannot be built."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.containers import ContainerLauncher, PodmanSettings, probe
from cdi.embedded.pods.processes import Launcher
from cdi.embedded.pods.runner import PodRunner
from tests.image.building import BuildFailed, build, unavailable_reason

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
def pod_runtime() -> str:
    """"process" unless the test is parametrized over both runtimes."""
    return "process"


@pytest.fixture(scope="session")
def container_image() -> str:
    """The project's image for the current tree; the test is skipped where it cannot be had."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"container runtime: {reason}")
    try:
        reference = build()
    except BuildFailed as e:
        pytest.skip(f"container runtime: the image cannot be built: {e}")
    why_not = asyncio.run(probe(PodmanSettings.from_environment(os.environ), reference))
    if why_not is not None:
        pytest.skip(f"container runtime: {why_not}")
    return reference


@pytest.fixture
def launcher(request: pytest.FixtureRequest, pod_runtime: str) -> Launcher | None:
    """The runner's launcher: None (its default, processes) or podman's."""
    if pod_runtime == "process":
        return None
    return ContainerLauncher(PodmanSettings.from_environment(os.environ), request.getfixturevalue("container_image"))


@pytest.fixture
async def runner(cluster: EmbeddedCluster, state_dir: Path, launcher: Launcher | None) -> AsyncIterator[PodRunner]:
    pod_runner = PodRunner(cluster, state_dir, backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, retry_after=0.2,
                           launcher=launcher)
    yield pod_runner
    await pod_runner.close()
