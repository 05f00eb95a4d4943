"""`DirectoryPool`: each volume is a plain directory, for machines where loop devices do not work.

Layout: `volumes/<pv-name>/` under the pool directory, which is also the PV's path. There is no
capacity enforcement: a volume can grow until the pool's own filesystem is full, whatever its claim
asked for, so importers see the host filesystem's free space, not the volume's. Block volumes need a
device and are refused with `BlockVolumesUnsupported`. `cdi.embedded.volumes.selection` picks this
pool only when `LoopPool` cannot work; nothing needs attaching after a restart, so `ensure_attached`
only checks that the directory is still there. A snapshot (`snapshots/<handle>/`) or a clone is a copy
of the volume's directory, each file reflinked where the pool's filesystem can, else copied sparsely;
a plain directory cannot be frozen, so a volume a pod is using is not snapshotted
(`SnapshotNotConsistent`, retried) rather than copied while it changes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.copying import copy_tree, supports_reflink
from cdi.embedded.volumes.errors import (
    BlockVolumesUnsupported,
    SnapshotMissing,
    SnapshotNotConsistent,
    VolumeConflict,
    VolumeMissing,
    translated_os_errors,
)
from cdi.embedded.volumes.pool import SnapshotInfo, VolumeInfo
from cdi.embedded.volumes.snapshotfiles import SnapshotFiles


class DirectoryPool:
    """Volumes as directories under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._root = root.resolve()
        self._now_ns = now_ns
        self._reflink: bool | None = None
        self._snapshots = SnapshotFiles(self._root / "snapshots", "")
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def kind(self) -> str:
        return "directory"

    @property
    def root(self) -> Path:
        return self._root

    def volume_path(self, name: str) -> Path:
        return self._root / "volumes" / name

    def owns(self, info: VolumeInfo) -> bool:
        return info.pool == self.kind and info.backing == str(self.volume_path(info.name))

    async def create_volume(self, name: str, size_bytes: int, volume_mode: VolumeMode, *,
                            fs_type: str | None = None) -> VolumeInfo:
        if volume_mode == VolumeMode.BLOCK:
            raise BlockVolumesUnsupported(
                f"the storage pool at {self._root} keeps volumes as plain directories because loop devices "
                f"do not work on this machine, so it cannot provide volumeMode Block; "
                f"ask for volumeMode Filesystem instead")
        async with self._locks[name]:
            directory = self.volume_path(name)
            with translated_os_errors(f"creating the directory of volume {name}"):
                directory.mkdir(parents=True, exist_ok=True)
            return VolumeInfo(name=name, volume_mode=volume_mode, size_bytes=size_bytes, path=str(directory),
                              backing=str(directory), pool=self.kind)

    async def ensure_attached(self, info: VolumeInfo) -> VolumeInfo:
        if not self.owns(info):
            raise VolumeConflict(f"volume {info.name} is kept in {info.backing}, not in the directory pool "
                                 f"at {self._root}")
        if not Path(info.backing).is_dir():
            raise VolumeMissing(f"the directory {info.backing} holding volume {info.name} is gone; its data is lost")
        return info.at(info.backing)

    async def expand_volume(self, info: VolumeInfo, size_bytes: int) -> VolumeInfo:
        """Nothing to grow: a directory has no capacity of its own; the volume just records the new size."""
        return replace(info, size_bytes=max(size_bytes, info.size_bytes))

    async def expand_filesystem(self, info: VolumeInfo, *, in_use: bool = False) -> VolumeInfo:
        return await self.ensure_attached(info)

    async def delete_volume(self, info: VolumeInfo) -> None:
        async with self._locks[info.name]:
            directory = self.volume_path(info.name)
            with translated_os_errors(f"deleting volume {info.name}"):
                if directory.exists():
                    shutil.rmtree(directory)

    async def volume_names(self) -> list[str]:
        volumes = self._root / "volumes"
        return sorted(path.name for path in volumes.iterdir() if path.is_dir()) if volumes.is_dir() else []

    @property
    def supports_reflink(self) -> bool:
        if self._reflink is None:
            with translated_os_errors(f"probing {self._root} for reflink support"):
                self._root.mkdir(parents=True, exist_ok=True)
                self._reflink = supports_reflink(self._root)
        return self._reflink

    async def snapshot_volume(self, info: VolumeInfo, handle: str, *, in_use: bool = False) -> SnapshotInfo:
        async with self._locks[info.name]:
            taken = self._snapshots.read(handle)
            if taken is not None:
                return taken
            if in_use:
                raise SnapshotNotConsistent(
                    f"volume {info.name} is a plain directory in use by a pod, which cannot be frozen for a "
                    f"consistent snapshot; it is taken once no pod uses the volume")
            source = await self.ensure_attached(info)
            partial = self._snapshots.prepare(handle)
            created = self._now_ns()
            with translated_os_errors(f"snapshotting volume {info.name}"):
                method = await asyncio.to_thread(copy_tree, Path(source.backing), partial)
            return self._snapshots.commit(SnapshotInfo(
                handle=handle, source_volume=info.name, volume_mode=info.volume_mode, size_bytes=info.size_bytes,
                backing=str(self._snapshots.backing(handle)), pool=self.kind, created_ns=created, method=method))

    async def get_snapshot(self, handle: str) -> SnapshotInfo | None:
        return self._snapshots.read(handle)

    async def delete_snapshot(self, handle: str) -> None:
        async with self._locks[f"snapshot {handle}"]:
            self._snapshots.delete(handle)

    async def create_volume_from(self, name: str, size_bytes: int, source: VolumeInfo | SnapshotInfo, *,
                                 in_use: bool = False) -> VolumeInfo:
        if source.volume_mode == VolumeMode.BLOCK:
            return await self.create_volume(name, size_bytes, source.volume_mode)  # refused
        if in_use and isinstance(source, VolumeInfo) and not self.volume_path(name).exists():
            raise SnapshotNotConsistent(
                f"volume {source.name} is a plain directory in use by a pod, which cannot be frozen for a "
                f"consistent copy; it is cloned once no pod uses the volume")
        async with self._locks[name]:
            directory = self.volume_path(name)
            if not directory.exists():
                if not Path(source.backing).is_dir():
                    what = source.handle if isinstance(source, SnapshotInfo) else source.name
                    raise SnapshotMissing(f"the source {what} of volume {name} is gone from {source.backing}")
                partial = directory.with_name(f".{name}.partial")
                with translated_os_errors(f"copying {source.backing} into volume {name}"):
                    shutil.rmtree(partial, ignore_errors=True)
                    await asyncio.to_thread(copy_tree, Path(source.backing), partial)
                    os.replace(partial, directory)
            return VolumeInfo(name=name, volume_mode=source.volume_mode, size_bytes=max(size_bytes, source.size_bytes),
                              path=str(directory), backing=str(directory), pool=self.kind)
