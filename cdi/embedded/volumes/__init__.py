"""Local volumes for the embedded mode: storage pools, the provisioner and reclaimer, restart recovery.

The storage behaves as the CSI driver `CSI_DRIVER_NAME`. `cdi serve` builds it in this order:
`open_pool(root)` (a `LoopPool` when loop devices work, its images on a reflink xfs image when the pool
directory cannot reflink; else a `DirectoryPool`), `ensure_default_storage(cluster)` (StorageClasses
`local`, `local-wffc` and `local-xfs`, the CSIDriver, the default VolumeSnapshotClass
`DEFAULT_SNAPSHOT_CLASS`), `ensure_all_attached(cluster, pool)` (re-attach after a restart), then runs
`controllers(cluster, pool, clock)` with the runtime's manager (and `cdi.embedded.snapshots`' controllers).
Claims with a PVC or VolumeSnapshot data source are provisioned as copies (`StoragePool.create_volume_from`;
`StoragePool.supports_reflink` says whether copies are O(1)). The pod runner maps a claim to a path
through its bound PV's `pycdi.local/volume-path` annotation.
"""

from cdi.embedded.volumes.defaults import DEFAULT_CLASS, WFFC_CLASS, XFS_CLASS, ensure_default_storage
from cdi.embedded.volumes.directory import DirectoryPool
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.keys import CSI_DRIVER_NAME, DEFAULT_SNAPSHOT_CLASS, NODE_NAME, PROVISIONER_NAME
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.pool import SnapshotInfo, StoragePool, VolumeInfo
from cdi.embedded.volumes.provisioner import ClaimReconciler, controllers
from cdi.embedded.volumes.reclaimer import VolumeReconciler
from cdi.embedded.volumes.restart import AttachReport, ensure_all_attached
from cdi.embedded.volumes.selection import open_pool

__all__ = [
    "CSI_DRIVER_NAME",
    "DEFAULT_CLASS",
    "DEFAULT_SNAPSHOT_CLASS",
    "NODE_NAME",
    "PROVISIONER_NAME",
    "WFFC_CLASS",
    "XFS_CLASS",
    "AttachReport",
    "ClaimReconciler",
    "DirectoryPool",
    "LoopPool",
    "SnapshotInfo",
    "StoragePool",
    "VolumeError",
    "VolumeInfo",
    "VolumeReconciler",
    "controllers",
    "ensure_all_attached",
    "ensure_default_storage",
    "open_pool",
]
