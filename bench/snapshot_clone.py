"""`python -m bench.snapshot_clone` (root): the embedded CSI driver's snapshot and clone times (issue 12).

A 64 GiB volume holding 2 GiB of data (64 random 32 MiB extents spread over it) is made through the
provisioner on an embedded store, then, timed from the object's creation to its readiness as the
reconcilers see it: a VolumeSnapshot until readyToUse, a claim restored from it until Bound, and a
claim cloned from the source claim (a CSI clone) until Bound. Once on a pool with reflink (the xfs
image `open_pool` makes when the pool directory has none), once on a pool without (a `LoopPool`
straight on the pool directory's filesystem: sparse copies), for Block and for Filesystem volumes.
Target: under a second for each on the reflink pool. Prints a table; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.volumes import pv_path
from cdi.embedded.snapshots.controller import ContentReconciler, SnapshotReconciler
from cdi.embedded.volumes.defaults import ensure_default_storage
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.provisioner import ClaimReconciler
from cdi.embedded.volumes.reclaimer import VolumeReconciler
from cdi.embedded.volumes.selection import open_pool
from cdi.embedded.volumes.tracking import EventOnce
from cdi.runtime.types import Key
from tests.volumes.support import FakeClock, release_everything

GIB, MIB = 1 << 30, 1 << 20
EXTENTS, EXTENT = 64, 32 * MIB


def claim(name: str, mode: str, **spec: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": mode, "storageClassName": "local",
                     "resources": {"requests": {"storage": "64Gi"}}, **spec}}


class Bench:
    def __init__(self, cluster: EmbeddedCluster, pool: StoragePool) -> None:
        clock = FakeClock()
        self.cluster = cluster
        self.claims = ClaimReconciler(cluster, pool, clock, events=EventOnce(cluster, clock))
        self.volumes = VolumeReconciler(cluster, pool, EventOnce(cluster, clock))
        self.snapshots = SnapshotReconciler(cluster, clock, EventOnce(cluster, clock))
        self.contents = ContentReconciler(cluster, pool, clock, EventOnce(cluster, clock))

    async def bound(self, name: str) -> dict[str, object]:
        await self.claims.reconcile(Key("default", name))
        pvc = await self.cluster.get("v1", "PersistentVolumeClaim", name, "default")
        assert pvc["status"]["phase"] == "Bound", pvc
        return await self.cluster.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])

    async def snapshot(self, name: str, source: str) -> None:
        created = await self.cluster.create({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                                             "metadata": {"name": name, "namespace": "default"},
                                             "spec": {"source": {"persistentVolumeClaimName": source}}})
        await self.snapshots.reconcile(Key("default", name))
        await self.contents.reconcile(Key("", f"snapcontent-{created['metadata']['uid']}"))
        await self.snapshots.reconcile(Key("default", name))
        got = await self.cluster.get("snapshot.storage.k8s.io/v1", "VolumeSnapshot", name, "default")
        assert got["status"]["readyToUse"] is True, got


def fill(path: str, mode: str) -> None:
    """2 GiB of random data in 64 extents spread over the 64 GiB volume."""
    target = Path(path) if mode == "Block" else Path(path) / "disk.img"
    with open(target, "r+b" if mode == "Block" else "wb") as out:
        if mode != "Block":
            out.truncate(60 * GIB)
        for index in range(EXTENTS):
            out.seek(index * (60 * GIB // EXTENTS))
            out.write(os.urandom(EXTENT))
        os.fsync(out.fileno())


async def run(root: Path, reflink: bool, mode: str) -> dict[str, float]:
    pool: StoragePool = await open_pool(root) if reflink else LoopPool(root)
    async with EmbeddedCluster(root.parent / f"{root.name}.db", poll_interval=0.05) as cluster:
        await ensure_default_storage(cluster)
        bench = Bench(cluster, pool)
        await cluster.create(claim("source", mode))
        fill(pv_path(await bench.bound("source")) or "", mode)
        times: dict[str, float] = {}
        started = time.monotonic()
        await bench.snapshot("snap", "source")
        times["snapshot"] = time.monotonic() - started
        await cluster.create(claim("restored", mode, dataSourceRef={
            "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}))
        started = time.monotonic()
        await bench.bound("restored")
        times["restore"] = time.monotonic() - started
        await cluster.create(claim("clone", mode, dataSource={"kind": "PersistentVolumeClaim", "name": "source"}))
        started = time.monotonic()
        await bench.bound("clone")
        times["csi-clone"] = time.monotonic() - started
        return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-sparse", action="store_true", help="only the reflink pool")
    args = parser.parse_args()
    print("| pool | volume mode | snapshot | restore | csi-clone |\n|---|---|---|---|---|")
    for reflink in (True, False)[: 1 if args.no_sparse else 2]:
        for mode in ("Block", "Filesystem"):
            with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
                root = Path(scratch) / "pool"
                try:
                    times = await run(root, reflink, mode)
                finally:
                    release_everything(root)
            print(f"| {'reflink xfs' if reflink else 'no reflink'} | {mode} | "
                  + " | ".join(f"{times[key]:.3f} s" for key in ("snapshot", "restore", "csi-clone")) + " |")


if __name__ == "__main__":
    asyncio.run(main())
