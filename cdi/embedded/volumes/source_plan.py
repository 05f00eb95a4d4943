"""Provisioning a claim as a copy of a PVC or a VolumeSnapshot: the pure half of external-provisioner's
data-source handling, for `cdi.embedded.volumes.claim_plan`.

A claim whose `dataSourceRef` (or `dataSource`) names a PersistentVolumeClaim (core group) or a
VolumeSnapshot (`snapshot.storage.k8s.io`) is provisioned from it; any other kind is a volume
populator's (CDI's VolumeImportSource, VolumeCloneSource, ...), and this provisioner leaves the claim
alone, as external-provisioner does. `plan_copy` decides from a `CopySource` (what
`cdi.embedded.volumes.sources` observed about the source): wait while the source PVC is not Bound or
the snapshot not readyToUse, refuse (a Warning `ProvisioningFailed`, retried when the claim or source
changes) a source in another namespace (there is no ReferenceGrant support), of another driver, with
another volume mode, or larger than the claim's request; otherwise copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.pool import VolumeInfo

PVC_KIND, SNAPSHOT_KIND = "PersistentVolumeClaim", "VolumeSnapshot"
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
    ready: bool = False  # the PVC is Bound / the snapshot readyToUse
    size_bytes: int | None = None  # the PVC's capacity / the snapshot's restoreSize
    volume_mode: VolumeMode | None = None  # None: not known (a pre-provisioned snapshot without sourceVolumeMode)
    driver: str = ""  # the source PV's CSI driver (or provisioner) / the snapshot content's driver
    volume: VolumeInfo | None = None  # the source PVC's volume, when this pool holds it
    snapshot_handle: str | None = None


@dataclass(frozen=True)
class CopyFrom:
    volume: VolumeInfo | None = None
    snapshot_handle: str | None = None


@dataclass(frozen=True)
class Refuse:
    reason: str  # ProvisioningFailed
    message: str
    waiting: bool = False  # the source may still become ready: a Normal event rather than a Warning


def plan_copy(namespace: str, request_bytes: int, volume_mode: VolumeMode, source: CopySource,
              drivers: tuple[str, ...]) -> CopyFrom | Refuse:
    """Copy the source, or why not (yet)."""
    ref = source.ref
    what = "PVC" if ref.kind == PVC_KIND else "snapshot"
    if ref.namespace and ref.namespace != namespace:
        return Refuse("ProvisioningFailed", f"data source {ref.kind} {ref.namespace}/{ref.name} is in another "
                                            f"namespace: cross-namespace data sources need a ReferenceGrant, which "
                                            f"this provisioner does not support")
    if not source.found:
        return Refuse("ProvisioningFailed", f"error getting {what} {ref.name} (namespace \"{namespace}\") from "
                                            f"api server: {_resource(ref.kind)} \"{ref.name}\" not found", waiting=True)
    if not source.ready:
        state = "not bound" if ref.kind == PVC_KIND else "not ready to use"
        return Refuse("ProvisioningFailed", f"the {what} {ref.name} (namespace \"{namespace}\") is {state}",
                      waiting=True)
    if source.driver not in drivers:
        return Refuse("ProvisioningFailed", f"the source {what} {ref.name} is of driver \"{source.driver}\", not "
                                            f"\"{drivers[0]}\": a volume can be copied only by its own driver")
    if source.volume_mode is not None and source.volume_mode != volume_mode:
        return Refuse("ProvisioningFailed", f"the source {what} and the new PVC must have the same volume mode: "
                                            f"source is {source.volume_mode.value}, new PVC is {volume_mode.value}")
    if source.size_bytes is not None and request_bytes < source.size_bytes:
        return Refuse("ProvisioningFailed", f"requested volume size {request_bytes} is less than the size "
                                            f"{source.size_bytes} for the source {what} {ref.name}")
    if ref.kind == PVC_KIND:
        if source.volume is None:
            return Refuse("ProvisioningFailed", f"the volume of source PVC {ref.name} is not in this node's "
                                                f"storage pool")
        return CopyFrom(volume=source.volume)
    return CopyFrom(snapshot_handle=source.snapshot_handle)


def _resource(kind: str) -> str:
    return "persistentvolumeclaims" if kind == PVC_KIND else "volumesnapshots.snapshot.storage.k8s.io"
