"""`DirectoryPool`: each volume is a plain directory, for machines where loop devices do not work.

Layout: `volumes/<pv-name>/` under the pool directory, which is also the PV's path. There is no
capacity enforcement: a volume can grow until the pool's own filesystem is full, whatever its claim
asked for, so importers see the host filesystem's free space, not the volume's. Block volumes need a
device and are refused with `BlockVolumesUnsupported`. `cdi.embedded.volumes.selection` picks this
pool only when `LoopPool` cannot work; nothing needs attaching after a restart, so `ensure_attached`
only checks that the directory is still there.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.errors import (
    BlockVolumesUnsupported,
    VolumeConflict,
    VolumeMissing,
    translated_os_errors,
)
from cdi.embedded.volumes.pool import VolumeInfo


class DirectoryPool:
    """Volumes as directories under `root` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
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
