"""The provisioner and reclaimer against a real `EmbeddedCluster` and a real `LoopPool`: claims become
bound volumes on loop devices, wait for their consumer, bind statically, and give their storage back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.volumes.claim_plan import Provision, plan_claim
from cdi.embedded.volumes.loop import LoopPool
from cdi.runtime.types import Key
from tests.volumes.conftest import Reconcilers
from tests.volumes.support import (
    MIB,
    block_size,
    events_about,
    loop_devices_of,
    mounted_at,
    pvc,
    settle,
    static_pv,
    volume_path,
)

PVC, PV = ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume")


async def get_claim(cluster: EmbeddedCluster, name: str = "data") -> Object:
    return await cluster.get(*PVC, name, "default")


async def test_an_immediate_claim_gets_a_bound_volume(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                      loop_reconcilers: Reconcilers) -> None:
    created = await cluster.create(pvc("data", "60M"))  # 57.2 MiB: rounded up to 58 MiB
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim = await get_claim(cluster)
    name = f"pvc-{created['metadata']['uid']}"
    pv = await cluster.get(*PV, name)
    assert claim["spec"]["volumeName"] == name
    assert claim["status"] == {"phase": "Bound", "capacity": {"storage": "58Mi"}, "accessModes": ["ReadWriteOnce"]}
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert claim["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert claim["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "local.csi.pycdi.io"
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["capacity"] == {"storage": "58Mi"}
    assert pv["spec"]["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                                      "name": "data", "uid": created["metadata"]["uid"]}
    assert volume_path(pv) == str(loop_pool.mount_path(name))
    assert "local" not in pv["spec"]
    assert pv["spec"]["csi"] == {"driver": "local.csi.pycdi.io", "volumeHandle": name, "fsType": "ext4",
                                 "volumeAttributes": {"pycdi.local/pool": "loop",
                                                      "pycdi.local/backing": str(loop_pool.image_path(name))}}
    assert (pv["spec"]["storageClassName"], pv["spec"]["volumeMode"]) == ("local", "Filesystem")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [
        "pycdi-node"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "local.csi.pycdi.io"
    assert pv["metadata"]["finalizers"] == ["pycdi.local/volume-protection"]
    assert mounted_at(volume_path(pv)) == "ext4"
    stats = os.statvfs(volume_path(pv))
    assert stats.f_bavail * stats.f_frsize >= 58 * MIB  # its files get the whole capacity
    assert ("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}") in await events_about(
        cluster, "data")


async def test_reconcile_is_idempotent(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                       loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    claim_before, volumes_before = await get_claim(cluster), (await cluster.list(*PV)).items
    events_before = (await cluster.list("v1", "Event", "default")).items

    for _ in range(3):
        await loop_reconcilers.claims.reconcile(Key("default", "data"))
        for volume in volumes_before:
            await loop_reconcilers.volumes.reconcile(Key.of(volume))

    assert await get_claim(cluster) == claim_before
    assert (await cluster.list(*PV)).items == volumes_before
    assert (await cluster.list("v1", "Event", "default")).items == events_before
    assert await loop_pool.volume_names() == [volumes_before[0]["metadata"]["name"]]


async def test_wait_for_first_consumer(cluster: EmbeddedCluster, loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data", storage_class="local-wffc"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    assert (await get_claim(cluster))["status"] == {"phase": "Pending"}
    assert (await cluster.list(*PV)).items == []
    events = await cluster.list("v1", "Event", "default")
    assert [(event["reason"], event["message"], event["count"]) for event in events.items] == [
        ("WaitForFirstConsumer", "waiting for first consumer to be created before binding", 1)]

    await cluster.patch(*PVC, "data", {"metadata": {"annotations": {
        "volume.kubernetes.io/selected-node": "pycdi-node"}}}, "default")
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    assert (await get_claim(cluster))["status"]["phase"] == "Bound"


async def test_a_block_claim_gets_a_loop_device(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data", "16Mi", volume_mode="Block"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    pv = await cluster.get(*PV, (await get_claim(cluster))["spec"]["volumeName"])
    device = volume_path(pv)
    assert device.startswith("/dev/loop")
    assert pv["spec"]["volumeMode"] == "Block"
    assert pv["metadata"]["annotations"]["pycdi.local/volume-path"] == device
    assert block_size(device) == 16 * MIB


async def test_deleting_the_claim_deletes_the_volume_and_its_storage(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                                     loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data"))
    await cluster.create(pvc("raw", volume_mode="Block"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    volumes = {obj["metadata"]["name"]: volume_path(obj) for obj in (await cluster.list(*PV)).items}
    images = [loop_pool.image_path(name) for name in volumes]

    await cluster.delete(*PVC, "data", "default")
    await cluster.delete(*PVC, "raw", "default")
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    assert (await cluster.list(*PV)).items == []
    assert not any(image.exists() for image in images)
    assert not any(mounted_at(path) for path in volumes.values())
    assert await loop_pool.volume_names() == []


async def test_retain_keeps_the_volume_released(cluster: EmbeddedCluster, loop_pool: LoopPool,
                                                loop_reconcilers: Reconcilers) -> None:
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "keep"},
                          "provisioner": "pycdi.local/hostpath", "reclaimPolicy": "Retain"})
    await cluster.create(pvc("data", storage_class="keep"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    name = (await get_claim(cluster))["spec"]["volumeName"]

    await cluster.delete(*PVC, "data", "default")
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    pv = await cluster.get(*PV, name)
    assert (pv["status"]["phase"], pv["spec"]["persistentVolumeReclaimPolicy"]) == ("Released", "Retain")
    assert loop_pool.image_path(name).exists()

    await cluster.delete(*PV, name)  # an administrator lets it go
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    with pytest.raises(NotFound):
        await cluster.get(*PV, name)
    assert not loop_pool.image_path(name).exists()


async def test_a_crash_between_volume_and_pv_does_not_leak_a_second_volume(
        cluster: EmbeddedCluster, loop_pool: LoopPool, loop_reconcilers: Reconcilers) -> None:
    raw = await cluster.create(pvc("data"))
    observed = await loop_reconcilers.claims.observe(raw)
    provision = next(action for action in plan_claim(observed).actions if isinstance(action, Provision))
    made = await loop_reconcilers.claims.provision_volume(provision)  # ... and the process dies here
    (Path(made.path) / "written-before-the-crash").write_text("x")

    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    assert await loop_pool.volume_names() == [provision.volume_name]
    assert len(loop_devices_of(loop_pool.image_path(provision.volume_name))) == 1
    pv = await cluster.get(*PV, provision.volume_name)
    assert (Path(volume_path(pv)) / "written-before-the-crash").exists()
    assert (await get_claim(cluster))["status"]["phase"] == "Bound"


async def test_a_claim_naming_an_available_volume_binds_to_it(cluster: EmbeddedCluster, tmp_path: Path,
                                                              loop_reconcilers: Reconcilers) -> None:
    await cluster.create(static_pv("manual-1", str(tmp_path), "32Mi"))
    await cluster.create(pvc("data", "20Mi", storage_class="manual", volume_name="manual-1"))
    await cluster.create(pvc("greedy", "64Mi", storage_class="manual", volume_name="manual-1"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    claim, pv = await get_claim(cluster), await cluster.get(*PV, "manual-1")
    assert claim["status"]["phase"] == "Bound" and claim["status"]["capacity"] == {"storage": "32Mi"}
    assert "pv.kubernetes.io/bound-by-controller" not in claim["metadata"]["annotations"]
    assert pv["status"]["phase"] == "Bound"
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert (await get_claim(cluster, "greedy"))["status"] == {"phase": "Pending"}
    assert await events_about(cluster, "greedy") == [
        ("Warning", "FailedBinding", 'volume "manual-1" already bound to a different claim.')]

    await cluster.delete(*PVC, "data", "default")
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    assert (await cluster.get(*PV, "manual-1"))["status"]["phase"] == "Released"  # Retain, not ours
    assert tmp_path.exists()


async def test_a_missing_class_or_another_provisioner_leaves_the_claim_pending(
        cluster: EmbeddedCluster, loop_pool: LoopPool, loop_reconcilers: Reconcilers) -> None:
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ebs"},
                          "provisioner": "ebs.csi.aws.com"})
    await cluster.create(pvc("lost", storage_class="nowhere"))
    await cluster.create(pvc("elsewhere", storage_class="ebs"))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)

    assert (await get_claim(cluster, "lost"))["status"] == {"phase": "Pending"}
    assert (await get_claim(cluster, "elsewhere"))["status"] == {"phase": "Pending"}
    assert await events_about(cluster, "lost") == [
        ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "nowhere" not found')]
    assert [reason for _, reason, _ in await events_about(cluster, "elsewhere")] == ["ExternalProvisioning"]
    assert await loop_pool.volume_names() == []

    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "nowhere"},
                          "provisioner": "pycdi.local/hostpath"})
    assert loop_reconcilers.claims.pending.for_storage_class(await cluster.get(
        "storage.k8s.io/v1", "StorageClass", "nowhere")) == [Key("default", "lost")]
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    assert (await get_claim(cluster, "lost"))["status"]["phase"] == "Bound"


async def test_a_claim_without_a_class_gets_the_default_one(cluster: EmbeddedCluster,
                                                            loop_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data", storage_class=None))
    await settle(cluster, loop_reconcilers.claims, loop_reconcilers.volumes)
    claim = await get_claim(cluster)
    assert (claim["spec"]["storageClassName"], claim["status"]["phase"]) == ("local", "Bound")


async def test_the_directory_pool_provisions_directories_and_refuses_block(
        cluster: EmbeddedCluster, pool_root: Path, directory_reconcilers: Reconcilers) -> None:
    await cluster.create(pvc("data"))
    await cluster.create(pvc("raw", volume_mode="Block"))
    await settle(cluster, directory_reconcilers.claims, directory_reconcilers.volumes)

    path = Path(volume_path(await cluster.get(*PV, (await get_claim(cluster))["spec"]["volumeName"])))
    assert path.is_dir() and path.is_relative_to(pool_root)
    assert list(path.iterdir()) == []
    assert (await get_claim(cluster, "raw"))["status"] == {"phase": "Pending"}
    [(type_, reason, message)] = await events_about(cluster, "raw")
    assert (type_, reason) == ("Warning", "ProvisioningFailed")
    assert "cannot provide volumeMode Block; ask for volumeMode Filesystem instead" in message

    await cluster.delete(*PVC, "data", "default")
    await settle(cluster, directory_reconcilers.claims, directory_reconcilers.volumes)
    assert not path.exists()
