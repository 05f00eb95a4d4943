"""Growing a bound claim: the plan (tables, no I/O), then real volumes on loop devices whose image, loop
device and filesystem grow with their data kept, for Filesystem (ext4, xfs) and Block volumes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cdi.api.core import VolumeMode
from cdi.embedded import EmbeddedCluster
from cdi.embedded.volumes.claim_plan import ClaimObservation, Notify, SetClaimBound, plan_claim
from cdi.embedded.volumes.errors import VolumeInUse, VolumeToolFailed
from cdi.embedded.volumes.expansion import (
    FS_RESIZE_PENDING_MESSAGE,
    ExpandFilesystem,
    ExpandVolume,
    FinishResize,
    SetResizeCondition,
)
from cdi.embedded.volumes.growth import file_bytes
from cdi.embedded.volumes.keys import ANN_PROVISIONED_BY, PROVISIONER_NAME
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.objects import parse_claim, parse_storage_class, parse_volume
from cdi.embedded.volumes.pool import VolumeInfo, volume_info_from_annotations
from cdi.embedded.volumes.provisioner import ClaimReconciler
from cdi.quantity import parse_quantity
from cdi.runtime.types import Key
from tests.volumes.conftest import Reconcilers
from tests.volumes.support import (
    MIB,
    FakeClock,
    block_size,
    detach,
    events_about,
    loop_devices_of,
    pvc,
    settle,
    static_pv,
    storage_class,
    unmount,
    volume_path,
)

PVC, PV = ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")
UID = "1234-abcd"
NAME = f"pvc-{UID}"
GROWABLE = storage_class("local", allowVolumeExpansion=True)
FIXED = storage_class("local", allowVolumeExpansion=False)
POOL_RECORD = {"pycdi.local/pool": "loop", "pycdi.local/backing": f"/pool/images/{NAME}.img",
               "pycdi.local/volume-path": f"/pool/mounts/{NAME}", "pycdi.local/fs-type": "ext4"}


def bound(request: str, capacity: str, *, mode: str = "Filesystem",
          conditions: tuple[str, ...] = ()) -> dict[str, Any]:
    claim = pvc("data", request, volume_mode=mode, volume_name=NAME,
                annotations={"pv.kubernetes.io/bind-completed": "yes"})
    claim["metadata"]["uid"] = UID
    claim["status"] = {"phase": "Bound", "capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce"],
                       "conditions": [{"type": kind, "status": "True"} for kind in conditions]}
    return claim


def volume(capacity: str, *, mode: str = "Filesystem", provisioned_by: str = PROVISIONER_NAME) -> dict[str, Any]:
    obj = static_pv(NAME, f"/pool/mounts/{NAME}", capacity, storage_class="local", volume_mode=mode, reclaim="Delete")
    obj["metadata"]["annotations"] = {ANN_PROVISIONED_BY: provisioned_by, **POOL_RECORD}
    obj["spec"]["claimRef"] = {"namespace": "default", "name": "data", "uid": UID}
    obj["status"] = {"phase": "Bound"}
    return obj


def plan(claim: dict[str, Any], pv: dict[str, Any], cls: dict[str, Any] = GROWABLE) -> tuple[Any, ...]:
    return plan_claim(ClaimObservation(parse_claim(claim), (parse_storage_class(cls),), (parse_volume(pv),))).actions


def info(size: int, mode: VolumeMode = VolumeMode.FILESYSTEM) -> VolumeInfo:
    recorded = volume_info_from_annotations(NAME, mode, size, POOL_RECORD)
    assert recorded is not None
    return recorded


def test_a_grown_filesystem_claim_is_expanded_by_controller_then_node() -> None:
    assert plan(bound("2Gi", "1Gi"), volume("1Gi")) == (
        SetResizeCondition("Resizing"),
        Notify("Normal", "Resizing", f"External resizer is resizing volume {NAME} to 2Gi"),
        ExpandVolume(info(1024 * MIB), 2048 * MIB),
        Notify("Normal", "VolumeResizeSuccessful", f"Resize volume {NAME} to 2Gi succeeded"),
        SetResizeCondition("FileSystemResizePending", FS_RESIZE_PENDING_MESSAGE),
        ExpandFilesystem(info(2048 * MIB)),
        Notify("Normal", "FileSystemResizeSuccessful",
               f"MountVolume.NodeExpandVolume succeeded for volume {NAME} (2Gi)"),
        FinishResize("2Gi", ("ReadWriteOnce",)))


def test_a_grown_block_claim_needs_no_filesystem_step() -> None:
    actions = plan(bound("300M", "100Mi", mode="Block"), volume("100Mi", mode="Block"))
    assert actions[0] == SetResizeCondition("Resizing")
    assert actions[2] == ExpandVolume(info(100 * MIB, VolumeMode.BLOCK), 287 * MIB)  # whole MiB, rounded up
    assert actions[-1] == FinishResize("287Mi", ("ReadWriteOnce",))
    assert not any(isinstance(action, ExpandFilesystem | SetClaimBound) for action in actions)


def test_after_a_crash_only_the_missing_steps_are_planned() -> None:
    # The PV was grown, the claim still waits for its filesystem.
    assert plan(bound("2Gi", "1Gi", conditions=("FileSystemResizePending",)), volume("2Gi")) == (
        ExpandFilesystem(info(2048 * MIB)),
        Notify("Normal", "FileSystemResizeSuccessful",
               f"MountVolume.NodeExpandVolume succeeded for volume {NAME} (2Gi)"),
        FinishResize("2Gi", ("ReadWriteOnce",)))
    # Resizing was set, nothing else happened yet: the condition is not set twice.
    assert plan(bound("2Gi", "1Gi", conditions=("Resizing",)), volume("1Gi"))[0] == Notify(
        "Normal", "Resizing", f"External resizer is resizing volume {NAME} to 2Gi")
    # Everything is done.
    assert plan(bound("2Gi", "2Gi"), volume("2Gi")) == ()


@pytest.mark.parametrize(("cls", "pv"), [(FIXED, volume("1Gi")), (GROWABLE, volume("1Gi", provisioned_by="other"))])
def test_growth_nobody_here_may_do_is_left_alone(cls: dict[str, Any], pv: dict[str, Any]) -> None:
    actions = plan(bound("2Gi", "1Gi"), pv, cls)
    assert not any(isinstance(action, ExpandVolume | ExpandFilesystem | SetResizeCondition) for action in actions)
    if cls is FIXED:
        assert actions == (Notify("Warning", "VolumeResizeFailed", f"cannot grow volume {NAME} to 2Gi: StorageClass "
                                                                    f'"local" does not allow volume expansion'),)


def room(path: str) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize + file_bytes(Path(path))


async def grow(cluster: EmbeddedCluster, size: str) -> None:
    await cluster.patch(*PVC, "data", {"spec": {"resources": {"requests": {"storage": size}}}}, "default")


async def provisioned(cluster: EmbeddedCluster, reconcilers: Reconcilers, claim: dict[str, Any]) -> dict[str, Any]:
    await cluster.create(claim)
    await settle(cluster, reconcilers.claims, reconcilers.volumes)
    return await cluster.get(*PV, (await cluster.get(*PVC, "data", "default"))["spec"]["volumeName"])


@pytest.mark.parametrize(("fs_type", "storage_class_name", "before", "after"),
                         [("ext4", "local", "100Mi", "1Gi"), ("xfs", "local-xfs", "400Mi", "3Gi")])
async def test_a_filesystem_volume_grows_and_keeps_its_data(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                            loop_reconcilers: Reconcilers, fs_type: str,
                                                            storage_class_name: str, before: str, after: str) -> None:
    pv = await provisioned(cluster, loop_reconcilers, pvc("data", before, storage_class=storage_class_name))
    path, image = volume_path(pv), loop_pool.image_path(pv["metadata"]["name"])
    data = os.urandom(MIB) * 20
    (Path(path) / "disk.img").write_bytes(data)
    image_before, room_before = image.stat().st_size, room(path)

    await grow(cluster, after)
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim, pv = await cluster.get(*PVC, "data", "default"), await cluster.get(*PV, pv["metadata"]["name"])
    assert claim["status"]["capacity"] == {"storage": after} and pv["spec"]["capacity"] == {"storage": after}
    assert "conditions" not in claim["status"]
    assert image.stat().st_size >= image_before + parse_quantity(after) - parse_quantity(before)
    assert [block_size(device) for device in loop_devices_of(image)] == [image.stat().st_size]
    assert room_before < parse_quantity(after) <= room(path)
    assert (Path(path) / "disk.img").read_bytes() == data
    reasons = [reason for _, reason, _ in await events_about(cluster, "data")]
    assert reasons[-3:] == ["Resizing", "VolumeResizeSuccessful", "FileSystemResizeSuccessful"]


async def test_a_block_volume_grows_and_keeps_its_data(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                       loop_reconcilers: Reconcilers) -> None:
    pv = await provisioned(cluster, loop_reconcilers, pvc("data", "16Mi", volume_mode="Block"))
    device = volume_path(pv)
    with open(device, "r+b") as out:
        out.seek(15 * MIB)
        out.write(b"end of the old device")

    await grow(cluster, "48Mi")
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim = await cluster.get(*PVC, "data", "default")
    assert claim["status"]["capacity"] == {"storage": "48Mi"}
    assert (await cluster.get(*PV, pv["metadata"]["name"]))["spec"]["capacity"] == {"storage": "48Mi"}
    assert block_size(device) == 48 * MIB == loop_pool.image_path(pv["metadata"]["name"]).stat().st_size
    with open(device, "r+b") as out:
        out.seek(15 * MIB)
        assert out.read(21) == b"end of the old device"
        out.seek(47 * MIB)
        out.write(b"new room")


class NodeStepFails:
    """A pool whose node step fails, as a kubelet that is down would leave an expansion."""

    def __init__(self, pool: LoopPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def expand_filesystem(self, info: VolumeInfo, *, in_use: bool = False) -> VolumeInfo:
        raise VolumeToolFailed("resize2fs: Device or resource busy")


async def test_an_interrupted_expansion_says_so_and_finishes_later(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                                   loop_reconcilers: Reconcilers,
                                                                   clock: FakeClock) -> None:
    pv = await provisioned(cluster, loop_reconcilers, pvc("data", "64Mi"))
    await grow(cluster, "128Mi")
    broken = ClaimReconciler(cluster, NodeStepFails(loop_pool), clock)

    with pytest.raises(VolumeToolFailed):
        await broken.reconcile(Key("default", "data"))

    claim = await cluster.get(*PVC, "data", "default")
    assert [c["type"] for c in claim["status"]["conditions"]] == ["FileSystemResizePending"]
    assert claim["status"]["capacity"] == {"storage": "64Mi"}
    assert (await cluster.get(*PV, pv["metadata"]["name"]))["spec"]["capacity"] == {"storage": "128Mi"}
    assert ("Warning", "VolumeResizeFailed", f"resizing volume {pv['metadata']['name']} failed: "
                                             f"resize2fs: Device or resource busy") in await events_about(cluster, "data")

    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim = await cluster.get(*PVC, "data", "default")
    assert claim["status"]["capacity"] == {"storage": "128Mi"} and "conditions" not in claim["status"]
    assert room(volume_path(pv)) >= 128 * MIB


async def test_a_volume_found_short_is_grown_when_mounted_again(loop_pool: LoopPool) -> None:
    """An expansion cut short after the PV recorded the new size finishes at the next mount."""
    made = await loop_pool.create_volume("pvc-a", 100 * MIB, VolumeMode.FILESYSTEM)
    (Path(made.path) / "disk.img").write_bytes(b"kept" * 4096)
    unmount(made.path)
    for device in loop_devices_of(loop_pool.image_path("pvc-a")):
        detach(device)

    again = await loop_pool.ensure_attached(replace(made, size_bytes=300 * MIB))

    assert room(again.path) >= 300 * MIB
    assert (Path(again.path) / "disk.img").read_bytes() == b"kept" * 4096


def online_ext4_resize_allowed() -> bool:
    """resize2fs grows a mounted ext4 only with CAP_SYS_RESOURCE (bit 24), which containers often lack."""
    status = Path("/proc/self/status").read_text()
    return bool(int(status.split("CapEff:")[1].split()[0], 16) >> 24 & 1)


def pod_using(claim: str, phase: str = "Running") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}}


async def test_an_ext4_volume_in_use_grows_online_or_once_its_pod_has_finished(
        cluster: EmbeddedCluster, loop_reconcilers: Reconcilers) -> None:
    pv = await provisioned(cluster, loop_reconcilers, pvc("data", "64Mi"))
    path = volume_path(pv)
    (Path(path) / "disk.img").write_bytes(b"in use" * 1000)
    await cluster.create(pod_using("data"))
    await grow(cluster, "256Mi")

    if online_ext4_resize_allowed():
        await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    else:
        with pytest.raises(VolumeInUse):
            await loop_reconcilers.claims.reconcile(Key("default", "data"))
        claim = await cluster.get(*PVC, "data", "default")
        assert [c["type"] for c in claim["status"]["conditions"]] == ["FileSystemResizePending"]
        assert claim["status"]["capacity"] == {"storage": "64Mi"}
        assert any(reason == "VolumeResizeFailed" and "can grow only while no pod uses it" in message
                   for _, reason, message in await events_about(cluster, "data"))
        assert room(path) < 256 * MIB
        await cluster.patch_status("v1", "Pod", "consumer", {"status": {"phase": "Succeeded"}}, "default")
        await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim = await cluster.get(*PVC, "data", "default")
    assert claim["status"]["capacity"] == {"storage": "256Mi"} and "conditions" not in claim["status"]
    assert room(path) >= 256 * MIB
    assert (Path(path) / "disk.img").read_bytes() == b"in use" * 1000
