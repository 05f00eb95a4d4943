"""The operator's reconciler suite runs on both backends: the embedded store and a real kube-apiserver with
CDI's CRDs (`kube_api_only`, shared by the session). Each test starts without CDI resources, without the
`cdi-config` ConfigMap and without DataVolumes, and leaves none behind: on the shared API server a CR
left with the finalizer would be reconciled by nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions
from cdi.embedded import EmbeddedCluster
from cdi.kube import connect
from tests.support.backends import reset_cluster
from tests.support.kubecluster import KubeCluster

CDI_API = "cdi.kubevirt.io/v1beta1"
NAMESPACE = "cdi"


class StepClock:
    """A clock that moves only when told: condition times in the tests are exact."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return 0.0

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


async def clean(cluster: Cluster) -> None:
    for cdi in (await cluster.list(CDI_API, "CDI")).items:
        name = cdi["metadata"]["name"]
        try:
            if cdi["metadata"].get("finalizers"):
                await cluster.patch(CDI_API, "CDI", name, {"metadata": {"finalizers": None}})
            await cluster.delete(CDI_API, "CDI", name)
        except NotFound:
            pass
    try:
        await cluster.delete("v1", "ConfigMap", "cdi-config", NAMESPACE)
    except NotFound:
        pass
    await reset_cluster(cluster)


@pytest.fixture(params=["embedded", "kubernetes"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if request.param == "embedded":
        async with EmbeddedCluster(tmp_path / "store.db") as store:
            yield store
        return
    control_plane: KubeCluster = request.getfixturevalue("kube_api_only")
    async with await connect(control_plane.kubeconfig_path) as kube:
        try:
            await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except AlreadyExists:
            pass
        await clean(kube)
        try:
            yield kube
        finally:
            await clean(kube)
            for pod in (await kube.list("v1", "Pod", "default")).items:
                await kube.delete("v1", "Pod", pod["metadata"]["name"], "default",
                                  options=DeleteOptions(grace_period_seconds=0))


@pytest.fixture
def clock() -> StepClock:
    return StepClock()
