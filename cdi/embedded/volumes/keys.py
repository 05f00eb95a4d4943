"""Names the local volume provisioner writes on objects, spelled once.

Kubernetes' own keys (the PV controller's binding annotations, the provisioned-by annotation, the
default-class annotation re-exported from `cdi.contracts.annotations`, the CSI fstype parameter) and
this provisioner's own (`pycdi.local/...`: which pool holds a volume, its backing file and its
current path). The pod runner reads `ANN_VOLUME_PATH` of a PV (or `spec.local.path` of a PV an earlier
version stored) to map a claim to a path on this machine.

The provisioner is a CSI driver, `CSI_DRIVER_NAME`: new StorageClasses name it as their provisioner,
PVs carry it in `spec.csi.driver`, and the CSIDriver object and default VolumeSnapshotClass
(`DEFAULT_SNAPSHOT_CLASS`) describe it. `PROVISIONER_NAME` is what earlier versions called it (not a
valid CSI driver name); classes and PVs stored with it keep being served (`OUR_PROVISIONERS`).
"""

from __future__ import annotations

from typing import Final

from cdi.contracts.annotations import ANN_DEFAULT_STORAGE_CLASS, ANN_SELECTED_NODE

__all__ = [
    "ANN_BETA_STORAGE_CLASS",
    "ANN_BETA_STORAGE_PROVISIONER",
    "ANN_BIND_COMPLETED",
    "ANN_BOUND_BY_CONTROLLER",
    "ANN_DEFAULT_STORAGE_CLASS",
    "ANN_PROVISIONED_BY",
    "ANN_SELECTED_NODE",
    "ANN_STORAGE_PROVISIONER",
    "ANN_VOLUME_BACKING",
    "ANN_VOLUME_FS_TYPE",
    "ANN_VOLUME_PATH",
    "ANN_VOLUME_POOL",
    "COMPONENT",
    "CSI_DRIVER_NAME",
    "DEFAULT_SNAPSHOT_CLASS",
    "FINALIZER_VOLUME_PROTECTION",
    "HOSTNAME_LABEL",
    "NODE_NAME",
    "OUR_PROVISIONERS",
    "PARAM_FS_TYPE",
    "PARAM_FS_TYPE_LEGACY",
    "PROVISIONER_NAME",
]

CSI_DRIVER_NAME: Final = "local.csi.pycdi.io"  # the CSI driver name: StorageClass.provisioner, PV spec.csi.driver
PROVISIONER_NAME: Final = "pycdi.local/hostpath"  # the provisioner name of earlier versions, still served
OUR_PROVISIONERS: Final = (CSI_DRIVER_NAME, PROVISIONER_NAME)  # StorageClass.provisioner values served here
DEFAULT_SNAPSHOT_CLASS: Final = "local-snapshots"  # the default VolumeSnapshotClass of CSI_DRIVER_NAME
NODE_NAME: Final = "pycdi-node"  # the one node of the embedded mode
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"  # the node label PV nodeAffinity selects on
COMPONENT: Final = "persistentvolume-controller"  # Events' source, as Kubernetes' PV controller

# StorageClass parameters: the filesystem a volume gets (the CSI key; in-tree plugins spelled it fsType).
PARAM_FS_TYPE: Final = "csi.storage.k8s.io/fstype"
PARAM_FS_TYPE_LEGACY: Final = "fsType"

# Kubernetes' PV controller and external-provisioner keys.
ANN_PROVISIONED_BY: Final = "pv.kubernetes.io/provisioned-by"
ANN_BIND_COMPLETED: Final = "pv.kubernetes.io/bind-completed"  # "yes" on a bound PVC
ANN_BOUND_BY_CONTROLLER: Final = "pv.kubernetes.io/bound-by-controller"  # "yes" when the controller bound it
ANN_STORAGE_PROVISIONER: Final = "volume.kubernetes.io/storage-provisioner"  # on PVCs to provision
ANN_BETA_STORAGE_PROVISIONER: Final = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_CLASS: Final = "volume.beta.kubernetes.io/storage-class"  # legacy; wins over the spec field

# This provisioner's own: where a volume lives, so it can be re-attached after a restart.
ANN_VOLUME_POOL: Final = "pycdi.local/pool"  # "loop" or "directory"
ANN_VOLUME_BACKING: Final = "pycdi.local/backing"  # the image file (loop) or directory holding the data
ANN_VOLUME_PATH: Final = "pycdi.local/volume-path"  # the current path: mount dir, /dev/loopN or directory
ANN_VOLUME_FS_TYPE: Final = "pycdi.local/fs-type"  # ext4 or xfs, for loop Filesystem volumes
FINALIZER_VOLUME_PROTECTION: Final = "pycdi.local/volume-protection"  # on PVs until their storage is freed
