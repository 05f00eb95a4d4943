"""The controller suite runs against a `cluster` fixture on both backends: the embedded store, and a real
kube-apiserver with CDI's CRDs (`kube_api_only`: no PV binder, since the tests bind claims themselves),
reset to empty before each test. The tests use only the `Cluster` protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdi.cluster.protocol import Cluster
from cdi.embedded import EmbeddedCluster
from cdi.kube import connect
from tests.support.backends import reset_cluster
from tests.support.kubecluster import KubeCluster


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture(params=["embedded", "kubernetes"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "embedded":
        async with EmbeddedCluster(tmp_path / "store.db") as store:
            yield store
        return
    control_plane: KubeCluster = request.getfixturevalue("kube_api_only")
    async with await connect(control_plane.kubeconfig_path) as kube:
        await reset_cluster(kube)
        yield kube


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()
