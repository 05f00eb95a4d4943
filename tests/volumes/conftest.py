"""Fixtures for the volume tests: an `EmbeddedCluster` in tmp_path, pools on real loop devices (torn
down even when a test fails: every mount and loop device under the pool directory is released),
and the two reconcilers wired as `controllers()` wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.volumes.defaults import ensure_default_storage
from cdi.embedded.volumes.directory import DirectoryPool
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.provisioner import ClaimReconciler
from cdi.embedded.volumes.reclaimer import VolumeReconciler
from cdi.embedded.volumes.tracking import EventOnce, PendingClaims
from tests.volumes.support import FakeClock, release_everything


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cluster(tmp_path: Path, clock: FakeClock) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "cluster.db", clock=clock, poll_interval=0.02) as opened:
        await ensure_default_storage(opened)
        yield opened


@pytest.fixture
def pool_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "pool"
    root.mkdir()
    yield root
    release_everything(root)


@pytest.fixture
def loop_pool(pool_root: Path) -> LoopPool:
    return LoopPool(pool_root)


@pytest.fixture
def directory_pool(pool_root: Path) -> DirectoryPool:
    return DirectoryPool(pool_root)


class Reconcilers:
    """The claim and volume reconcilers over one pool, sharing bookkeeping as `controllers()` does."""

    def __init__(self, cluster: EmbeddedCluster, pool: StoragePool, clock: FakeClock) -> None:
        events = EventOnce(cluster, clock)
        self.claims = ClaimReconciler(cluster, pool, clock, pending=PendingClaims(), events=events)
        self.volumes = VolumeReconciler(cluster, pool, events)


@pytest.fixture
def loop_reconcilers(cluster: EmbeddedCluster, loop_pool: LoopPool, clock: FakeClock) -> Reconcilers:
    return Reconcilers(cluster, loop_pool, clock)


@pytest.fixture
def directory_reconcilers(cluster: EmbeddedCluster, directory_pool: DirectoryPool, clock: FakeClock) -> Reconcilers:
    return Reconcilers(cluster, directory_pool, clock)
