"""The snapshot suite runs on both backends: the embedded store, and a real kube-apiserver with the
VolumeSnapshot CRDs (`kube_api_only`: no kube-controller-manager PV binder, so the embedded provisioner
binds on both, as it does under `cdi node` on a kubelet-less cluster). Each test gets a namespace, a
reflink pool under tmp_path (an xfs image, as `cdi serve` makes it) and `Harness`, which drives the
provisioner, reclaimer, snapshot and content reconcilers as the manager would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions
from cdi.embedded import EmbeddedCluster
from cdi.embedded.snapshots.controller import ContentReconciler, SnapshotReconciler
from cdi.embedded.volumes.defaults import ensure_default_storage
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.provisioner import ClaimReconciler
from cdi.embedded.volumes.reclaimer import VolumeReconciler
from cdi.embedded.volumes.selection import open_pool
from cdi.embedded.volumes.tracking import EventOnce, PendingClaims
from cdi.kube import connect
from cdi.runtime.types import Key
from tests.support.backends import _namespace_for
from tests.support.kubecluster import KubeCluster
from tests.volumes.support import FakeClock, release_everything

VS = ("snapshot.storage.k8s.io/v1", "VolumeSnapshot")
VSC = ("snapshot.storage.k8s.io/v1", "VolumeSnapshotContent")
PVC, PV = ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")


class Harness:
    """One test's cluster, namespace, pool and reconcilers."""

    def __init__(self, backend: str, cluster: Cluster, namespace: str, pool: LoopPool, clock: FakeClock) -> None:
        self.backend, self.cluster, self.namespace, self.pool, self.clock = backend, cluster, namespace, pool, clock
        events = EventOnce(cluster, clock)
        self.claims = ClaimReconciler(cluster, pool, clock, pending=PendingClaims(), events=events)
        self.volumes = VolumeReconciler(cluster, pool, events)
        self.snapshots = SnapshotReconciler(cluster, clock, EventOnce(cluster, clock, component="snapshot-controller"))
        self.contents = ContentReconciler(cluster, pool, clock, EventOnce(cluster, clock, component="csi-snapshotter"))

    async def mine(self, kind: tuple[str, str]) -> list[Key]:
        """The cluster-scoped objects of this test: PVs claimed from, and contents of, its namespace."""
        keys = []
        for obj in (await self.cluster.list(*kind)).items:
            spec = obj.get("spec") or {}
            ref = spec.get("claimRef") or spec.get("volumeSnapshotRef") or {}
            if ref.get("namespace") == self.namespace:
                keys.append(Key.of(obj))
        return keys

    async def settle(self, rounds: int = 5) -> None:
        """Reconcile every claim, volume, snapshot and content of the test `rounds` times."""
        for _ in range(rounds):
            for obj in (await self.cluster.list(*PVC, self.namespace)).items:
                await self.claims.reconcile(Key.of(obj))
            for key in await self.mine(PV):
                await self.volumes.reconcile(key)
            for obj in (await self.cluster.list(*VS, self.namespace)).items:
                await self.snapshots.reconcile(Key.of(obj))
            for key in await self.mine(VSC):
                await self.contents.reconcile(key)

    async def get(self, kind: tuple[str, str], name: str) -> dict[str, object] | None:
        try:
            return await self.cluster.get(*kind, name, self.namespace if kind in (VS, PVC) else None)
        except NotFound:
            return None

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        items = (await self.cluster.list("v1", "Event", self.namespace)).items
        return [(e["type"], e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == name]

    async def cleanup(self) -> None:
        """Drop what a test leaves behind in cluster scope (the shared control plane outlives it)."""
        for kind in (VSC, PV):
            for key in await self.mine(kind):
                try:
                    await self.cluster.patch(*kind, key.name, {"metadata": {"finalizers": None}})
                    await self.cluster.delete(*kind, key.name, options=DeleteOptions(grace_period_seconds=0))
                except NotFound:
                    pass


@pytest.fixture(params=["embedded", "kubernetes"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock()
    namespace = _namespace_for(request.node.name)
    root = tmp_path / "pool"
    pool = await open_pool(root)
    assert isinstance(pool, LoopPool)
    try:
        if request.param == "embedded":
            async with EmbeddedCluster(tmp_path / "store.db", clock=clock, poll_interval=0.02) as store:
                await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
                await ensure_default_storage(store)
                yield Harness("embedded", store, namespace, pool, clock)
            return
        control_plane: KubeCluster = request.getfixturevalue("kube_api_only")
        async with await connect(control_plane.kubeconfig_path, qps=1000.0, burst=1000) as kube:  # tests: no limit
            await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            await ensure_default_storage(kube)
            harness = Harness("kubernetes", kube, namespace, pool, clock)
            try:
                yield harness
            finally:
                await harness.cleanup()
                await kube.delete("v1", "Namespace", namespace)
    finally:
        release_everything(root)
