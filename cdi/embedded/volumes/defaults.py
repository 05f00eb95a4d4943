"""The StorageClasses a fresh embedded control plane starts with, created by `cdi serve` at start-up.

`local` (the default class: Immediate binding, ext4), `local-wffc` (WaitForFirstConsumer, for claims
that should be provisioned only once a pod is scheduled) and `local-xfs` (Immediate, xfs, chosen with
the standard CSI parameter `csi.storage.k8s.io/fstype`), all served by the CSI driver `CSI_DRIVER_NAME`
with reclaim policy Delete and volume expansion allowed; the `CSIDriver` object describing that driver;
and, where the cluster serves `snapshot.storage.k8s.io/v1` (a real cluster may not), the default
VolumeSnapshotClass `local-snapshots` of the driver (deletionPolicy Delete). Existing objects are left
as they are, so an administrator's edits survive restarts (and classes an earlier version made with
the provisioner name `pycdi.local/hostpath` keep it, and keep being served).
"""

from __future__ import annotations

import copy

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.keys import (
    ANN_DEFAULT_STORAGE_CLASS,
    CSI_DRIVER_NAME,
    DEFAULT_SNAPSHOT_CLASS,
    PARAM_FS_TYPE,
)
from cdi.embedded.volumes.objects import BindingMode, ReclaimPolicy

DEFAULT_CLASS = "local"
WFFC_CLASS = "local-wffc"
XFS_CLASS = "local-xfs"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
ANN_DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"


def storage_class(name: str, binding_mode: BindingMode, *, default: bool, fs_type: str | None = None) -> Object:
    annotations = {ANN_DEFAULT_STORAGE_CLASS: "true"} if default else {}
    obj: Object = {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": CSI_DRIVER_NAME,
        "reclaimPolicy": ReclaimPolicy.DELETE.value,
        "volumeBindingMode": binding_mode.value,
        "allowVolumeExpansion": True,  # the loop pool grows image, loop device and filesystem
    }
    if fs_type is not None:
        obj["parameters"] = {PARAM_FS_TYPE: fs_type}
    return obj


DEFAULT_STORAGE_CLASSES = (
    storage_class(DEFAULT_CLASS, BindingMode.IMMEDIATE, default=True),
    storage_class(WFFC_CLASS, BindingMode.WAIT_FOR_FIRST_CONSUMER, default=False),
    storage_class(XFS_CLASS, BindingMode.IMMEDIATE, default=False, fs_type="xfs"),
)


CSI_DRIVER: Object = {
    "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
    "metadata": {"name": CSI_DRIVER_NAME},
    "spec": {
        "attachRequired": False,  # node-local volumes: nothing to attach before mounting
        "podInfoOnMount": False,
        "volumeLifecycleModes": ["Persistent"],
        "fsGroupPolicy": "File",
        "storageCapacity": False,
        "requiresRepublish": False,
    },
}

DEFAULT_SNAPSHOT_CLASS_OBJECT: Object = {
    "apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotClass",
    "metadata": {"name": DEFAULT_SNAPSHOT_CLASS, "annotations": {ANN_DEFAULT_SNAPSHOT_CLASS: "true"}},
    "driver": CSI_DRIVER_NAME,
    "deletionPolicy": "Delete",
}


async def ensure_default_storage(cluster: Cluster) -> list[str]:
    """Create the default StorageClasses, the CSIDriver and (where snapshots are served) the default
    VolumeSnapshotClass that do not exist yet; returns the names created (`kind/name` for the latter two)."""
    created = [name for name in [await _create_missing(cluster, obj) for obj in DEFAULT_STORAGE_CLASSES] if name]
    others = [CSI_DRIVER]
    if await cluster.served(SNAPSHOT_API, "VolumeSnapshotClass"):
        others.append(DEFAULT_SNAPSHOT_CLASS_OBJECT)
    for obj in others:
        name = await _create_missing(cluster, obj)
        if name:
            created.append(f"{obj['kind']}/{name}")
    return created


async def _create_missing(cluster: Cluster, obj: Object) -> str | None:
    """Create `obj` unless one of its name exists; its name if created."""
    name = str(obj["metadata"]["name"])
    try:
        await cluster.get(obj["apiVersion"], obj["kind"], name)
        return None
    except NotFound:
        pass
    try:
        await cluster.create(copy.deepcopy(obj))
    except AlreadyExists:
        return None
    return name
