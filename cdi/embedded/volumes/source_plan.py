"""Provisioning a claim as a copy of a PVC or a VolumeSnapshot: the pure half of external-provisioner's
data-source handling, for `cdi.embedded.volumes.claim_plan`.

A claim whose `dataSourceRef` (or `dataSource`) names a PersistentVolumeClaim (core group) or a
VolumeSnapshot (`snapshot.storage.k8s.io`) is provisioned from it; any other kind is a volume
populator's (CDI's VolumeImportSource, VolumeCloneSource, ...), and this provisioner leaves the claim
alone, as external-provisioner does. `plan_copy` decides from a `CopySource` (what
`cdi.embedded.volumes.sources` observed about the source), with external-provisioner's rules and
messages: wait while the source PVC is not Bound or the snapshot not bound and readyToUse; refuse (a
Warning `ProvisioningFailed`) a source in another namespace (there is no ReferenceGrant support), a
source PVC of another StorageClass, a source of another driver or volume mode, or one larger than the
claim's request; otherwise copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.pool import VolumeInfo

PVC_KIND, SNAPSHOT_KIND = "PersistentVolumeClaim", "VolumeSnapshot"
ANN_ALLOW_VOLUME_MODE_CHANGE = "snapshot.storage.kubernetes.io/allow-volume-mode-change"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"


@dataclass(frozen=True)
class DataSourceRef:
    api_group: str  # "" for the core group
    kind: str
    name: str
    namespace: str | None  # dataSourceRef.namespace, for cross-namespace sources

    @property
    def copies(self) -> bool:
        """Whether the provisioner copies this source (a PVC or VolumeSnapshot), rather than a populator filling it."""
        return (self.api_group, self.kind) in (("", PVC_KIND), (SNAPSHOT_GROUP, SNAPSHOT_KIND))


@dataclass(frozen=True)
class CopySource:
    """What was observed about a claim's PVC or VolumeSnapshot source."""

    ref: DataSourceRef
    found: bool = False
    bound: bool = False  # the PVC is Bound to its volume / the snapshot to a content naming it back
    ready: bool = False  # the snapshot is readyToUse (a bound PVC is ready)
    deleting: bool = False
    phase: str = ""  # the source PVC's phase
    storage_class: str | None = None  # the source PVC's class
    size_bytes: int | None = None  # the PVC's capacity / the snapshot's restoreSize
    volume_mode: VolumeMode | None = None  # None: not known (a pre-provisioned snapshot without sourceVolumeMode)
    driver: str = ""  # the source PV's CSI driver (or provisioner) / the snapshot content's driver
    volume: VolumeInfo | None = None  # the source PVC's volume, when this pool holds it
    in_use: bool = False  # a pod that has not finished uses the source PVC
    snapshot_handle: str | None = None
    content_name: str = ""


@dataclass(frozen=True)
class CopyFrom:
    volume: VolumeInfo | None = None
    snapshot_handle: str | None = None
    in_use: bool = False  # a pod uses the source volume


@dataclass(frozen=True)
class Refuse:
    reason: str  # ProvisioningFailed
    message: str
    waiting: bool = False  # the source may still become ready: plan again in a moment


def plan_copy(claim: str, namespace: str, class_name: str, request_bytes: int, volume_mode: VolumeMode,
              source: CopySource, drivers: tuple[str, ...]) -> CopyFrom | Refuse:
    """Copy the source, or why not (yet), in external-provisioner's words."""
    ref = source.ref
    if ref.namespace and ref.namespace != namespace:
        return _refuse(ref, f"accessing {ref.namespace}/{ref.name} of {ref.kind} dataSource from "
                            f"{namespace}/{claim} isn't allowed (ReferenceGrants are not supported)")
    problem = _claim_problem(namespace, class_name, source) if ref.kind == PVC_KIND else _snapshot_problem(source)
    if problem is not None:
        return problem
    if source.driver not in drivers:
        return _refuse(ref, "claim in dataSource not bound or invalid" if ref.kind == PVC_KIND else
                       f"snapshot {ref.name} not bound", f"its volume is of CSI driver \"{source.driver}\", "
                                                          f"not \"{drivers[0]}\"")
    if source.volume_mode is not None and source.volume_mode != volume_mode:
        if ref.kind == PVC_KIND:
            return _refuse(ref, f"the source PVC and destination PVCs must have the same volume mode for cloning.  "
                                f"Source is {source.volume_mode.value}, but new PVC requested {volume_mode.value}")
        return _refuse(ref, f"requested volume {namespace}/{claim} modifies the mode of the source volume but does "
                            f"not have permission to do so. {ANN_ALLOW_VOLUME_MODE_CHANGE} annotation is not present "
                            f"on snapshotcontent {source.content_name}")
    if source.size_bytes is not None and request_bytes < source.size_bytes:
        return _refuse(ref, f"error, new PVC request must be greater than or equal in size to the specified PVC "
                            f"data source, requested {request_bytes} but source is {source.size_bytes}"
                       if ref.kind == PVC_KIND else f"requested volume size {request_bytes} is less than the size "
                                                    f"{source.size_bytes} for the source snapshot {ref.name}")
    if ref.kind == PVC_KIND:
        if source.volume is None:
            return _refuse(ref, "claim in dataSource not bound or invalid", "its volume is not in this node's pool")
        return CopyFrom(volume=source.volume, in_use=source.in_use)
    return CopyFrom(snapshot_handle=source.snapshot_handle)


def _claim_problem(namespace: str, class_name: str, source: CopySource) -> Refuse | None:
    name = source.ref.name
    if not source.found:
        return _refuse(source.ref, f'error getting PVC {name} (namespace "{namespace}") from api server: '
                                   f'persistentvolumeclaims "{name}" not found', waiting=True)
    if source.phase != "Bound" or not source.bound:
        return _refuse(source.ref, f"the PVC DataSource {name} must have a status of Bound.  Got "
                                   f"{source.phase or 'Pending'}", waiting=True)
    if source.deleting:
        return _refuse(source.ref, f"the PVC DataSource {name} is currently being deleted")
    if source.storage_class != class_name:
        return _refuse(source.ref, f"the source PVC and destination PVCs must be in the same storage class for "
                                   f"cloning.  Source is in {source.storage_class}, but new PVC is in {class_name}")
    return None


def _snapshot_problem(source: CopySource) -> Refuse | None:
    name = source.ref.name
    if not source.found:
        return _refuse(source.ref, f"error getting snapshot {name} from api server: "
                                   f'volumesnapshots.snapshot.storage.k8s.io "{name}" not found', waiting=True)
    if not source.bound:
        return _refuse(source.ref, f"snapshot {name} not bound", waiting=True)
    if not source.ready:
        return _refuse(source.ref, f"snapshot {name} is not Ready", waiting=True)
    return None


def _refuse(ref: DataSourceRef, message: str, why: str = "", *, waiting: bool = False) -> Refuse:
    """external-provisioner's wrapping of a data source problem (and our reason, where it logs it)."""
    return Refuse("ProvisioningFailed", f"error getting handle for DataSource Type {ref.kind} by Name {ref.name}: "
                                        f"{message}{f' ({why})' if why else ''}", waiting)
