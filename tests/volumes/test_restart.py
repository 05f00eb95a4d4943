"""After a restart: volumes come back (on possibly different loop devices, recorded on their PVs),
orphaned volumes are freed, and the default StorageClasses and controllers are wired as `cdi serve` needs."""

from __future__ import annotations

from pathlib import Path

from cdi.api.core import VolumeMode
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.volumes import controllers, ensure_all_attached, ensure_default_storage
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.selection import open_pool
from cdi.runtime.types import Key
from tests.volumes.conftest import Reconcilers
from tests.volumes.support import (
    MIB,
    FakeClock,
    attach_at,
    detach,
    loop_devices_of,
    mounted_at,
    pvc,
    settle,
    unmount,
    volume_path,
)

PVC, PV = ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")


def reboot(pool: LoopPool, names: list[str]) -> None:
    """What a reboot does to the pool: nothing mounted, no loop devices."""
    for name in names:
        if mounted_at(str(pool.mount_path(name))):
            unmount(str(pool.mount_path(name)))
        for device in loop_devices_of(pool.image_path(name)):
            detach(device)


async def bound_volume(cluster: EmbeddedCluster, claim: str) -> Object:
    return await cluster.get(*PV, (await cluster.get(*PVC, claim, "default"))["spec"]["volumeName"])


async def test_volumes_come_back_after_a_reboot(cluster: EmbeddedCluster, loop_pool: LoopPool, pool_root: Path,
                                                loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("files"))
    await cluster.create(pvc("raw", volume_mode="Block"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    files, raw = await bound_volume(cluster, "files"), await bound_volume(cluster, "raw")
    (Path(volume_path(files)) / "disk.img").write_bytes(b"filesystem data")
    old_device = volume_path(raw)
    with open(old_device, "r+b") as device:
        device.write(b"block data")
    reboot(loop_pool, [files["metadata"]["name"], raw["metadata"]["name"]])
    squatter = pool_root / "squatter.img"  # after the reboot another user got the old device number
    squatter.write_bytes(b"\0" * MIB)
    attach_at(old_device, squatter)

    report = await ensure_all_attached(cluster, LoopPool(pool_root))  # a new process, a new pool object

    assert sorted(report.attached) == sorted([files["metadata"]["name"], raw["metadata"]["name"]])
    assert report.failed == {} and report.released == []
    raw_after = await cluster.get(*PV, raw["metadata"]["name"])
    new_device = volume_path(raw_after)
    assert new_device != old_device and report.moved == {raw["metadata"]["name"]: new_device}
    assert raw_after["metadata"]["annotations"]["pycdi.local/volume-path"] == new_device
    with open(new_device, "rb") as device:
        assert device.read(10) == b"block data"
    assert (Path(volume_path(files)) / "disk.img").read_bytes() == b"filesystem data"

    again = await ensure_all_attached(cluster, LoopPool(pool_root))
    assert again.moved == {} and sorted(again.attached) == sorted(report.attached)


async def test_orphaned_volumes_are_freed_and_lost_ones_reported(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                                 loop_reconcilers: Reconcilers) -> None:
    waiting = await cluster.create(pvc("waiting"))
    await cluster.create(pvc("doomed"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    doomed = await bound_volume(cluster, "doomed")
    stray = f"pvc-{waiting['metadata']['uid']}-not-yet"  # not a claim's volume name: an orphan
    await loop_pool.create_volume(stray, 16 * MIB, VolumeMode.BLOCK)
    await loop_pool.create_volume("pvc-of-a-deleted-claim", 16 * MIB, VolumeMode.FILESYSTEM)
    reboot(loop_pool, [doomed["metadata"]["name"]])
    loop_pool.image_path(doomed["metadata"]["name"]).unlink()

    report = await ensure_all_attached(cluster, loop_pool)

    assert sorted(report.released) == sorted([stray, "pvc-of-a-deleted-claim"])
    assert list(report.failed) == [doomed["metadata"]["name"]]
    assert "its data is lost" in report.failed[doomed["metadata"]["name"]]
    remaining = await loop_pool.volume_names()
    assert remaining == [(await bound_volume(cluster, "waiting"))["metadata"]["name"]]


async def test_a_volume_whose_claim_is_still_provisioning_is_kept(cluster: EmbeddedCluster,
                                                                  loop_pool: LoopPool) -> None:
    claim = await cluster.create(pvc("data"))
    name = f"pvc-{claim['metadata']['uid']}"
    await loop_pool.create_volume(name, 16 * MIB, VolumeMode.FILESYSTEM)  # the PV was never created

    report = await ensure_all_attached(cluster, loop_pool)

    assert report.released == [] and await loop_pool.volume_names() == [name]


async def test_default_storage_classes_are_created_once(tmp_path: Path, clock: FakeClock) -> None:
    async with EmbeddedCluster(tmp_path / "fresh.db", clock=clock) as cluster:
        assert await ensure_default_storage(cluster) == ["local", "local-wffc", "local-xfs",
                                                         "CSIDriver/local.csi.pycdi.io",
                                                         "VolumeSnapshotClass/local-snapshots"]
        await cluster.patch("storage.k8s.io/v1", "StorageClass", "local-wffc", {"reclaimPolicy": "Retain"})
        await cluster.patch("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "local-snapshots",
                            {"deletionPolicy": "Retain"})
        assert await ensure_default_storage(cluster) == []
        classes = {obj["metadata"]["name"]: obj for obj in (await cluster.list("storage.k8s.io/v1",
                                                                               "StorageClass")).items}
        driver = await cluster.get("storage.k8s.io/v1", "CSIDriver", "local.csi.pycdi.io")
        snapshot_class = await cluster.get("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", "local-snapshots")
    assert driver["spec"]["attachRequired"] is False and driver["spec"]["volumeLifecycleModes"] == ["Persistent"]
    assert snapshot_class["metadata"]["annotations"] == {"snapshot.storage.kubernetes.io/is-default-class": "true"}
    assert (snapshot_class["driver"], snapshot_class["deletionPolicy"]) == ("local.csi.pycdi.io", "Retain")
    local, wffc, xfs = classes["local"], classes["local-wffc"], classes["local-xfs"]
    assert local["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert (local["provisioner"], local["volumeBindingMode"], local["reclaimPolicy"]) == (
        "local.csi.pycdi.io", "Immediate", "Delete")
    assert (wffc["volumeBindingMode"], wffc["reclaimPolicy"]) == ("WaitForFirstConsumer", "Retain")
    assert wffc["metadata"].get("annotations", {}) == {}
    assert xfs["parameters"] == {"csi.storage.k8s.io/fstype": "xfs"}
    assert xfs["metadata"].get("annotations", {}) == {}
    assert all(obj["allowVolumeExpansion"] is True for obj in (local, wffc, xfs))


async def test_controllers_for_the_manager(cluster: EmbeddedCluster, loop_pool: LoopPool, clock: FakeClock) -> None:
    provisioner, reclaimer = controllers(cluster, loop_pool, clock)
    assert (provisioner.api_version, provisioner.kind) == ("v1", "PersistentVolumeClaim")
    assert (reclaimer.api_version, reclaimer.kind) == ("v1", "PersistentVolume")
    assert [(watch.api_version, watch.kind) for watch in provisioner.watches] == [
        ("storage.k8s.io/v1", "StorageClass"), ("v1", "PersistentVolume"), ("v1", "Pod")]
    [claims_to_volumes] = reclaimer.watches

    claim = await cluster.create(pvc("data", storage_class="late"))
    await provisioner.reconciler.reconcile(Key("default", "data"))
    late = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "late"}}
    assert list(provisioner.watches[0].map_to_keys(late)) == [Key("default", "data")]
    unclaimed = {"spec": {"storageClassName": "late"}}
    assert list(provisioner.watches[1].map_to_keys(unclaimed)) == [Key("default", "data")]
    claimed = {"spec": {"claimRef": {"namespace": "ns", "name": "other"}}}
    assert list(provisioner.watches[1].map_to_keys(claimed)) == [Key("ns", "other")]
    claim["spec"]["volumeName"] = "chosen"
    assert list(claims_to_volumes.map_to_keys(claim)) == [Key("", "chosen"), Key("", f"pvc-{claim['metadata']['uid']}")]


async def test_volumes_and_classes_stored_by_an_earlier_version_keep_working(
        cluster: EmbeddedCluster, pool_root: Path, clock: FakeClock) -> None:
    """An earlier version kept images under the pool directory, wrote `spec.local` PVs provisioned by
    `pycdi.local/hostpath` and classes with that provisioner; the reflink pool of this version serves them."""
    old_pool = LoopPool(pool_root)  # the pool as it was: images/ under the pool directory
    info = await old_pool.create_volume("pvc-old", 16 * MIB, VolumeMode.BLOCK)
    with open(info.path, "r+b") as device:
        device.write(b"written by the old version")
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "old"},
                          "provisioner": "pycdi.local/hostpath", "reclaimPolicy": "Delete"})
    claim = await cluster.create(pvc("old-claim", storage_class="old", volume_mode="Block", volume_name="pvc-old"))
    await cluster.create({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pvc-old", "finalizers": ["pycdi.local/volume-protection"],
                     "annotations": {"pv.kubernetes.io/provisioned-by": "pycdi.local/hostpath", **info.annotations()}},
        "spec": {"capacity": {"storage": "16Mi"}, "accessModes": ["ReadWriteOnce"], "volumeMode": "Block",
                 "storageClassName": "old", "persistentVolumeReclaimPolicy": "Delete", "local": {"path": info.path},
                 "claimRef": {"namespace": "default", "name": "old-claim", "uid": claim["metadata"]["uid"]}}})
    reboot(old_pool, ["pvc-old"])
    (pool_root / "squatter.img").write_bytes(b"\0" * MIB)
    attach_at(info.path, pool_root / "squatter.img")  # the old device number is taken after the reboot

    pool = await open_pool(pool_root)  # this version: a reflink xfs for new volumes
    assert isinstance(pool, LoopPool) and pool.data != pool_root
    report = await ensure_all_attached(cluster, pool)
    assert report.attached == ["pvc-old"] and report.released == []
    pv = await cluster.get(*PV, "pvc-old")
    assert pv["spec"]["local"] == {"path": info.path}  # immutable; the annotation has the new device
    with open(volume_path(pv), "rb") as device:
        assert device.read(26) == b"written by the old version"

    reconcilers = Reconcilers(cluster, pool, clock)
    await cluster.create(pvc("new-claim", storage_class="old"))
    await settle(cluster, reconcilers.claims, reconcilers.volumes)
    new_pv = await bound_volume(cluster, "new-claim")
    assert new_pv["spec"]["csi"]["driver"] == "local.csi.pycdi.io"
    assert new_pv["metadata"]["annotations"]["pycdi.local/backing"].startswith(str(pool.data))
    await cluster.delete(*PVC, "old-claim", "default")
    await settle(cluster, reconcilers.claims, reconcilers.volumes)
    assert not Path(info.backing).exists() and await pool.volume_names() == [new_pv["metadata"]["name"]]


class WithoutSnapshots(EmbeddedCluster):
    """A cluster without the VolumeSnapshot CRDs, as many real clusters are."""

    async def served(self, api_version: str, kind: str) -> bool:
        return not api_version.startswith("snapshot.storage.k8s.io/") and await super().served(api_version, kind)


async def test_no_snapshot_class_where_snapshots_are_not_served(tmp_path: Path, clock: FakeClock) -> None:
    async with WithoutSnapshots(tmp_path / "plain.db", clock=clock) as cluster:
        assert await ensure_default_storage(cluster) == ["local", "local-wffc", "local-xfs",
                                                         "CSIDriver/local.csi.pycdi.io"]
