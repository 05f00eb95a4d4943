"""The StorageClasses a fresh embedded control plane starts with, created by `cdi serve` at start-up.

`local` (the default class: Immediate binding, ext4), `local-wffc` (WaitForFirstConsumer, for claims
that should be provisioned only once a pod is scheduled) and `local-xfs` (Immediate, xfs, chosen with
the standard CSI parameter `csi.storage.k8s.io/fstype`), all served by `PROVISIONER_NAME` with reclaim
policy Delete and volume expansion allowed. Existing classes are left as they are, so an
administrator's edits survive restarts.
"""

from __future__ import annotations

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.keys import ANN_DEFAULT_STORAGE_CLASS, PARAM_FS_TYPE, PROVISIONER_NAME
from cdi.embedded.volumes.objects import BindingMode, ReclaimPolicy

DEFAULT_CLASS = "local"
WFFC_CLASS = "local-wffc"
XFS_CLASS = "local-xfs"


def storage_class(name: str, binding_mode: BindingMode, *, default: bool, fs_type: str | None = None) -> Object:
    annotations = {ANN_DEFAULT_STORAGE_CLASS: "true"} if default else {}
    obj: Object = {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": PROVISIONER_NAME,
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


async def ensure_default_storage(cluster: Cluster) -> list[str]:
    """Create the default StorageClasses that do not exist yet; returns the names created."""
    created = []
    for obj in DEFAULT_STORAGE_CLASSES:
        name = obj["metadata"]["name"]
        try:
            await cluster.get("storage.k8s.io/v1", "StorageClass", name)
            continue
        except NotFound:
            pass
        try:
            await cluster.create(obj)
        except AlreadyExists:
            continue
        created.append(name)
    return created
