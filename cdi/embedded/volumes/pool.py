"""The `StoragePool` protocol: where the embedded mode's local volumes come from.

A pool turns a name, a size and a volume mode into a path on this machine (`VolumeInfo`), makes that
path usable again after a restart (`ensure_attached`), grows it (`expand_volume`, then
`expand_filesystem`), and frees it (`delete_volume`). It also snapshots a volume (`snapshot_volume`, a
`SnapshotInfo` named by its handle; `get_snapshot`, `delete_snapshot`) and makes a volume as a copy of a
volume or of a snapshot (`create_volume_from`). The provisioner
(`cdi.embedded.volumes.provisioner`) creates and expands volumes, the reclaimer deletes them, and
`cdi.embedded.volumes.restart` re-attaches them when `cdi serve` starts. Two pools implement it:
`LoopPool` (`loop`, one sparse image file per volume on a loop device) and `DirectoryPool`
(`directory`, one plain directory per volume); `cdi.embedded.volumes.selection` picks one.

Every operation is idempotent and keyed by the volume's name (the PV name) or the snapshot's handle, so
a crash anywhere is repaired by calling it again. Each volume's data lives in exactly one backing file
or directory (`VolumeInfo.backing`), which is what snapshot and clone operations copy
(`cdi.embedded.volumes.copying`: reflink where the filesystem has it — `supports_reflink` says whether
it does, i.e. whether snapshots and clones are O(1) — sparse copy otherwise) into a snapshot or a new
volume's backing file, under a temporary name renamed into place when complete.

A `VolumeInfo` round-trips through PV annotations (`annotations` / `volume_info_from_annotations`), so
the PV is the record of where its data is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.keys import ANN_VOLUME_BACKING, ANN_VOLUME_FS_TYPE, ANN_VOLUME_PATH, ANN_VOLUME_POOL

MIB = 1024 * 1024


@dataclass(frozen=True)
class VolumeInfo:
    """One volume of a pool."""

    name: str  # the PV name; also names the backing file or directory
    volume_mode: VolumeMode
    size_bytes: int  # the capacity: what a Filesystem volume's files, or a Block volume's device, can hold
    path: str  # what a pod uses: a mount directory, a /dev/loopN device, or a plain directory
    backing: str  # the one file or directory that holds the data
    pool: str  # the kind of pool that made it: "loop" or "directory"
    fs_type: str | None = None  # the filesystem of a loop Filesystem volume

    def at(self, path: str) -> VolumeInfo:
        """The same volume, reachable at another path (a loop device renumbered after a restart)."""
        return replace(self, path=path)

    def annotations(self) -> dict[str, str]:
        """The PV annotations that let `volume_info_from_annotations` rebuild this record."""
        recorded = {ANN_VOLUME_POOL: self.pool, ANN_VOLUME_BACKING: self.backing, ANN_VOLUME_PATH: self.path}
        if self.fs_type:
            recorded[ANN_VOLUME_FS_TYPE] = self.fs_type
        return recorded


def volume_info_from_annotations(name: str, volume_mode: VolumeMode, size_bytes: int,
                                 annotations: Mapping[str, str]) -> VolumeInfo | None:
    """The volume a PV records, or None when the PV carries no pool record."""
    pool, backing, path = (annotations.get(key) for key in (ANN_VOLUME_POOL, ANN_VOLUME_BACKING, ANN_VOLUME_PATH))
    if not pool or not backing or not path:
        return None
    return VolumeInfo(name=name, volume_mode=volume_mode, size_bytes=size_bytes, path=path, backing=backing,
                      pool=pool, fs_type=annotations.get(ANN_VOLUME_FS_TYPE) or None)


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a pool: a point-in-time copy of a volume's backing file or directory."""

    handle: str  # names the snapshot in the pool (a VolumeSnapshotContent's snapshotHandle)
    source_volume: str  # the name of the volume it was taken of
    volume_mode: VolumeMode
    size_bytes: int  # the restore size: the source volume's capacity when it was taken
    backing: str  # the file or directory holding the copy
    pool: str
    created_ns: int  # when it was taken, nanoseconds since the epoch
    fs_type: str | None = None
    method: str = "sparse"  # "reflink" (shares the source's extents) or "sparse" (a copy of the data)

    def record(self) -> dict[str, Any]:
        """What the pool keeps beside the copy, for `snapshot_from_record`."""
        return {"handle": self.handle, "sourceVolume": self.source_volume, "volumeMode": self.volume_mode.value,
                "sizeBytes": self.size_bytes, "backing": self.backing, "pool": self.pool,
                "createdNs": self.created_ns, "fsType": self.fs_type, "method": self.method}


def snapshot_from_record(record: Mapping[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(handle=str(record["handle"]), source_volume=str(record["sourceVolume"]),
                        volume_mode=VolumeMode(record["volumeMode"]), size_bytes=int(record["sizeBytes"]),
                        backing=str(record["backing"]), pool=str(record["pool"]), created_ns=int(record["createdNs"]),
                        fs_type=record.get("fsType") or None, method=str(record.get("method") or "sparse"))


class StoragePool(Protocol):
    """Local volumes on this machine. Implementations serialise operations on the same name."""

    @property
    def kind(self) -> str:
        """"loop" or "directory": recorded on each volume so the right pool re-attaches it."""
        ...

    @property
    def root(self) -> Path:
        """The directory the pool keeps its volumes under."""
        ...

    def owns(self, info: VolumeInfo) -> bool:
        """Whether `info` describes a volume of this pool (same kind, backing under `root`)."""
        ...

    async def create_volume(self, name: str, size_bytes: int, volume_mode: VolumeMode, *,
                            fs_type: str | None = None) -> VolumeInfo:
        """Create the volume, or return the existing one of that name (attached) if it fits."""
        ...

    async def ensure_attached(self, info: VolumeInfo) -> VolumeInfo:
        """Make the volume reachable again (after a restart); returns it with its current path."""
        ...

    async def expand_volume(self, info: VolumeInfo, size_bytes: int) -> VolumeInfo:
        """Grow the volume's storage to `size_bytes` (the part a CSI controller does); returns it with
        its new size. A Filesystem volume's filesystem grows in `expand_filesystem`."""
        ...

    async def expand_filesystem(self, info: VolumeInfo, *, in_use: bool = False) -> VolumeInfo:
        """Grow a Filesystem volume's filesystem to offer `info.size_bytes` (the part kubelet does);
        `in_use`: a pod uses the volume, so it must not be unmounted for that (`VolumeInUse` if it must)."""
        ...

    async def delete_volume(self, info: VolumeInfo) -> None:
        """Detach the volume and delete its data; a volume already gone is not an error. Only
        `info.name` is needed, so a volume that never got a PV can be deleted too."""
        ...

    async def volume_names(self) -> list[str]:
        """The names of every volume the pool holds, sorted."""
        ...

    @property
    def supports_reflink(self) -> bool:
        """Whether snapshots and clones share the source's extents (O(1)) rather than copy its data."""
        ...

    async def snapshot_volume(self, info: VolumeInfo, handle: str, *, in_use: bool = False) -> SnapshotInfo:
        """Take a consistent snapshot of the volume named `handle`, or return the one already taken. A
        mounted filesystem is frozen around the copy and a Block volume's device buffers flushed; a pool
        that cannot make a volume `in_use` consistent refuses (`SnapshotNotConsistent`)."""
        ...

    async def get_snapshot(self, handle: str) -> SnapshotInfo | None:
        """The complete snapshot named `handle`, or None."""
        ...

    async def delete_snapshot(self, handle: str) -> None:
        """Free the snapshot's data; a snapshot already gone is not an error."""
        ...

    async def create_volume_from(self, name: str, size_bytes: int, source: VolumeInfo | SnapshotInfo, *,
                                 in_use: bool = False) -> VolumeInfo:
        """Create the volume `name` as a copy of a volume or a snapshot (its mode and filesystem), grown to
        `size_bytes` if that is more; or return the existing volume of that name, attached. `in_use`: a pod
        uses the source volume (as for `snapshot_volume`)."""
        ...


def round_up_to_mib(size_bytes: int) -> int:
    """Volumes are whole MiB: at least one, and never smaller than asked for."""
    return max(1, -(-size_bytes // MIB)) * MIB


def is_under(path: str, root: Path) -> bool:
    """Whether `path` lies inside the directory `root`."""
    return Path(path).is_relative_to(root)
