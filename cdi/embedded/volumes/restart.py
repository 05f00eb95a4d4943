"""Bringing the embedded mode's volumes back after `cdi serve` restarts (or the machine reboots).

`ensure_all_attached` runs once at start-up, before the provisioner's controllers: for every PV this
provisioner made whose storage is in the pool, the pool re-attaches and re-mounts it (loop devices and
mounts do not survive a reboot). A Block volume may come back on another `/dev/loopN`; the new path is
written to the PV's `pycdi.local/volume-path` annotation, which is where the pod runner looks first (a
PV's `spec.csi`, or the `spec.local` of a PV an earlier version stored, is immutable).
Then volumes the pool holds that no PV records and no claim will record (a crash between creating a
volume and its PV, followed by the claim's deletion) are deleted, so nothing leaks.
A volume that cannot be brought back is logged and reported, and the others still are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cdi.api.core import VolumeMode
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.manifests import moved_volume_patch
from cdi.embedded.volumes.objects import parse_volume
from cdi.embedded.volumes.pool import StoragePool, VolumeInfo

_log = logging.getLogger(__name__)
_VOLUME_PREFIX = "pvc-"


@dataclass
class AttachReport:
    """What `ensure_all_attached` did, by PV (or volume) name."""

    attached: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)  # name → the new path recorded on the PV
    failed: dict[str, str] = field(default_factory=dict)  # name → why it could not be attached
    released: list[str] = field(default_factory=list)  # orphaned volumes deleted


async def ensure_all_attached(cluster: Cluster, pool: StoragePool, *, release_orphans: bool = True) -> AttachReport:
    """Re-attach every volume of `pool` that a PV records, then (optionally) delete orphaned volumes."""
    report = AttachReport()
    volumes = (await cluster.list("v1", "PersistentVolume")).items
    for raw in volumes:
        await _reattach(cluster, pool, raw, report)
    if release_orphans:
        await _release_orphans(cluster, pool, {str(raw["metadata"]["name"]) for raw in volumes}, report)
    return report


async def _reattach(cluster: Cluster, pool: StoragePool, raw: Object, report: AttachReport) -> None:
    volume = parse_volume(raw)
    if not volume.ours or volume.deleting or volume.info is None:
        return
    if not pool.owns(volume.info):
        return
    try:
        info = await pool.ensure_attached(volume.info)
    except VolumeError as e:
        _log.error("could not re-attach volume %s: %s", volume.name, e)
        report.failed[volume.name] = str(e)
        return
    if info.path != volume.info.path:
        await cluster.patch("v1", "PersistentVolume", volume.name, moved_volume_patch(info))
        _log.info("volume %s moved from %s to %s", volume.name, volume.info.path, info.path)
        report.moved[volume.name] = info.path
    report.attached.append(volume.name)


async def _release_orphans(cluster: Cluster, pool: StoragePool, recorded: set[str], report: AttachReport) -> None:
    claim_uids = {str(claim["metadata"].get("uid"))
                  for claim in (await cluster.list("v1", "PersistentVolumeClaim")).items}
    for name in await pool.volume_names():
        if name in recorded or name.removeprefix(_VOLUME_PREFIX) in claim_uids:
            continue  # a PV records it, or its claim's provisioning will pick it up again
        try:
            await pool.delete_volume(VolumeInfo(name=name, volume_mode=VolumeMode.FILESYSTEM, size_bytes=0, path="",
                                                backing="", pool=pool.kind))
        except VolumeError as e:
            _log.error("could not delete orphaned volume %s: %s", name, e)
            report.failed[name] = str(e)
            continue
        _log.info("deleted volume %s: no PersistentVolume or claim refers to it", name)
        report.released.append(name)
