"""VolumeSnapshots of the embedded CSI driver, end to end through the reconcilers on both backends: take,
restore, clone (bytes compared by sha256), refusals with their events, populator claims left alone,
deletion policies, pre-provisioned contents and snapshots of other drivers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cdi.embedded.pods.volumes import pv_path
from cdi.runtime.types import Key
from tests.snapshots.conftest import PV, PVC, VS, VSC, Harness

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
MIB = 1024 * 1024


def claim(h: Harness, name: str, size: str = "64Mi", *, mode: str = "Filesystem", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": h.namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local", "volumeMode": mode,
                     "resources": {"requests": {"storage": size}}, **spec}}


def from_snapshot(snapshot: str) -> dict[str, Any]:
    return {"dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot}}


def snapshot(h: Harness, name: str, *, pvc: str | None = None, content: str | None = None,
             class_name: str | None = None) -> dict[str, Any]:
    source = {"persistentVolumeClaimName": pvc} if pvc else {"volumeSnapshotContentName": content}
    spec: dict[str, Any] = {"source": source, **({"volumeSnapshotClassName": class_name} if class_name else {})}
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "metadata": {"name": name, "namespace": h.namespace},
            "spec": spec}


async def disk(h: Harness, claim_name: str) -> Path:
    pvc = await h.get(PVC, claim_name)
    assert pvc is not None and pvc["status"]["phase"] == "Bound", pvc  # type: ignore[index]
    pv = await h.get(PV, pvc["spec"]["volumeName"])  # type: ignore[index]
    assert pv is not None
    return Path(pv_path(pv) or "") / "disk.img"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_snapshot_restore_and_clone_keep_the_bytes(harness: Harness) -> None:
    h = harness
    await h.cluster.create(claim(h, "source"))
    await h.settle(2)
    original = os.urandom(8 * MIB)
    (await disk(h, "source")).write_bytes(original)
    await h.cluster.create(claim(h, "restored", **from_snapshot("snap")))  # before the snapshot exists: waits
    await h.settle(2)
    assert (await h.get(PVC, "restored"))["status"]["phase"] == "Pending"  # type: ignore[index]
    assert any(reason == "ProvisioningFailed" and "not found" in message
               for _, reason, message in await h.events("restored"))

    created = await h.cluster.create(snapshot(h, "snap", pvc="source"))
    await h.snapshots.reconcile(Key(h.namespace, "snap"))  # taking it: the claim may not go away meanwhile
    protection = "snapshot.storage.kubernetes.io/pvc-as-source-protection"
    assert protection in (await h.get(PVC, "source"))["metadata"]["finalizers"]  # type: ignore[index]
    await h.settle()
    assert protection not in ((await h.get(PVC, "source"))["metadata"].get("finalizers") or [])  # type: ignore
    (await disk(h, "source")).write_bytes(b"changed after the snapshot")
    await h.cluster.create(claim(h, "clone", "100Mi", dataSource={"kind": "PersistentVolumeClaim", "name": "restored"}))
    await h.settle()

    taken = await h.get(VS, "snap")
    assert taken is not None
    content_name = f"snapcontent-{created['metadata']['uid']}"
    status = taken["status"]
    assert isinstance(status, dict)
    assert (status["readyToUse"], status["restoreSize"], status["boundVolumeSnapshotContentName"]) == (
        True, "64Mi", content_name)
    assert status["creationTime"].endswith("Z") and not status.get("error")
    assert taken["spec"]["volumeSnapshotClassName"] == "local-snapshots"  # type: ignore[index]
    assert sorted(taken["metadata"]["finalizers"]) == [  # type: ignore[index]
        "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
        "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"]
    content = await h.get(VSC, content_name)
    assert content is not None
    assert content["spec"]["volumeSnapshotRef"] == {  # type: ignore[index]
        "apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "name": "snap", "namespace": h.namespace,
        "uid": created["metadata"]["uid"]}
    assert (content["spec"]["driver"], content["spec"]["deletionPolicy"]) == (  # type: ignore[index]
        "local.csi.pycdi.io", "Delete")
    assert content["status"]["snapshotHandle"] == content_name  # type: ignore[index]
    assert content["status"]["restoreSize"] == 64 * MIB and content["status"]["readyToUse"] is True  # type: ignore
    assert isinstance(content["status"]["creationTime"], int)  # type: ignore[index]
    assert content["metadata"]["finalizers"] == [  # type: ignore[index]
        "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"]

    assert digest(await disk(h, "restored")) == hashlib.sha256(original).hexdigest()
    assert digest(await disk(h, "clone")) == hashlib.sha256(original).hexdigest()
    clone = await h.get(PVC, "clone")
    assert clone["status"]["capacity"] == {"storage": "100Mi"}  # type: ignore[index]


async def test_refused_copies_say_why_and_populated_claims_are_left_alone(harness: Harness) -> None:
    h = harness
    await h.cluster.create(claim(h, "source"))
    await h.settle(2)
    await h.cluster.create(snapshot(h, "snap", pvc="source"))
    await h.settle(2)
    await h.cluster.create(claim(h, "too-small", "32Mi", **from_snapshot("snap")))
    await h.cluster.create(claim(h, "block", mode="Block", **from_snapshot("snap")))
    await h.cluster.create(claim(h, "small-clone", "32Mi", dataSource={"kind": "PersistentVolumeClaim",
                                                                       "name": "source"}))
    await h.cluster.create(claim(h, "populated", dataSourceRef={"apiGroup": "cdi.kubevirt.io",
                                                                "kind": "VolumeImportSource", "name": "import"}))
    await h.settle(2)

    for name in ("too-small", "block", "small-clone", "populated"):
        pvc = await h.get(PVC, name)
        assert pvc is not None and pvc["status"].get("phase") == "Pending" and not pvc["spec"].get(  # type: ignore
            "volumeName"), name
    warnings = {name: [message for type_, reason, message in await h.events(name)
                       if (type_, reason) == ("Warning", "ProvisioningFailed")]
                for name in ("too-small", "block", "small-clone", "populated")}
    assert any(f"requested volume size {32 * MIB} is less than the size {64 * MIB}" in m
               for m in warnings["too-small"])
    assert any(f"requested volume {h.namespace}/block modifies the mode of the source volume but does not have "
               f"permission to do so" in m for m in warnings["block"])
    assert any(f"new PVC request must be greater than or equal in size to the specified PVC data source, requested "
               f"{32 * MIB} but source is {64 * MIB}" in m for m in warnings["small-clone"])
    assert warnings["populated"] == []


async def test_deletion_policies(harness: Harness) -> None:
    h = harness
    await h.cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotClass",
                            "metadata": {"name": f"retain-{h.namespace}"}, "driver": "local.csi.pycdi.io",
                            "deletionPolicy": "Retain"})
    await h.cluster.create(claim(h, "source", mode="Block"))
    await h.settle(2)
    deleted = await h.cluster.create(snapshot(h, "deleted", pvc="source"))
    retained = await h.cluster.create(snapshot(h, "retained", pvc="source", class_name=f"retain-{h.namespace}"))
    await h.settle()
    deleted_content, retained_content = (f"snapcontent-{obj['metadata']['uid']}" for obj in (deleted, retained))
    assert await h.pool.get_snapshot(deleted_content) is not None
    assert (await h.get(VSC, retained_content))["spec"]["sourceVolumeMode"] == "Block"  # type: ignore[index]

    await h.cluster.delete(*VS, "deleted", h.namespace)
    await h.cluster.delete(*VS, "retained", h.namespace)
    await h.settle()

    assert await h.get(VS, "deleted") is None and await h.get(VS, "retained") is None
    assert await h.get(VSC, deleted_content) is None and await h.pool.get_snapshot(deleted_content) is None
    kept = await h.get(VSC, retained_content)
    assert kept is not None and kept["status"]["readyToUse"] is True  # type: ignore[index]
    assert await h.pool.get_snapshot(retained_content) is not None
    await h.cluster.delete("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", f"retain-{h.namespace}")


async def test_a_pre_provisioned_content_binds_and_restores(harness: Harness) -> None:
    h = harness
    await h.cluster.create(claim(h, "source"))
    await h.settle(2)
    (await disk(h, "source")).write_bytes(b"pre-provisioned data")
    volume = (await h.get(PV, (await h.get(PVC, "source"))["spec"]["volumeName"]))  # type: ignore[index]
    from cdi.embedded.volumes.objects import parse_volume
    info = parse_volume(volume).info  # type: ignore[arg-type]
    assert info is not None
    handle = f"imported-{h.namespace}"
    await h.pool.snapshot_volume(info, handle)
    content_name = f"content-{h.namespace}"
    await h.cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent",
                            "metadata": {"name": content_name},
                            "spec": {"deletionPolicy": "Retain", "driver": "local.csi.pycdi.io",
                                     "source": {"snapshotHandle": handle},
                                     "volumeSnapshotRef": {"name": "existing", "namespace": h.namespace}}})
    made = await h.cluster.create(snapshot(h, "existing", content=content_name))
    await h.settle()

    bound = await h.get(VS, "existing")
    assert bound is not None and bound["status"]["readyToUse"] is True  # type: ignore[index]
    assert bound["status"]["boundVolumeSnapshotContentName"] == content_name  # type: ignore[index]
    content = await h.get(VSC, content_name)
    assert content["spec"]["volumeSnapshotRef"]["uid"] == made["metadata"]["uid"]  # type: ignore[index]
    await h.cluster.create(claim(h, "restored", **from_snapshot("existing")))
    await h.settle(2)
    assert (await disk(h, "restored")).read_bytes() == b"pre-provisioned data"


async def test_snapshots_this_driver_will_not_take_say_why(harness: Harness) -> None:
    h = harness
    other = f"other-{h.namespace}"
    await h.cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotClass", "metadata": {"name": other},
                            "driver": "ebs.csi.aws.com", "deletionPolicy": "Delete"})
    await h.cluster.create(claim(h, "source"))
    await h.settle(2)
    await h.cluster.create(snapshot(h, "foreign", pvc="source", class_name=other))
    await h.cluster.create(snapshot(h, "orphan", pvc="missing"))
    await h.settle(2)

    assert await h.mine(VSC) == []
    assert any(reason == "SnapshotNotHandled" and '"ebs.csi.aws.com"' in message
               for _, reason, message in await h.events("foreign"))
    orphan = await h.get(VS, "orphan")
    assert orphan is not None and orphan["status"]["readyToUse"] is False  # type: ignore[index]
    assert 'persistentvolumeclaim "missing" not found' in orphan["status"]["error"]["message"]  # type: ignore
    assert ("Warning", "SnapshotCreationFailed") in {(t, r) for t, r, _ in await h.events("orphan")}
    await h.cluster.delete(SNAPSHOT_API, "VolumeSnapshotClass", other)
