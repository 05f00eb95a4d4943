"""`LoopPool`: each volume is one sparse image file on a loop device, the embedded mode's default pool.

Layout under the pool directory:

    images/<pv-name>.img    the volume's data: a sparse file of exactly the volume's size
    mounts/<pv-name>/       where a Filesystem volume's image is mounted (the PV's path)

A Filesystem volume is formatted (ext4 by default, xfs on request) and mounted, so pods see real
filesystem overhead and real ENOSPC; a Block volume's path is its loop device (`/dev/loopN`). An image
is built as a hidden `.partial` file and renamed into place only once formatted, so an existing
`<pv-name>.img` is always complete and `create_volume` after a crash reuses it instead of leaking a
second one. Loop devices and mounts do not survive a reboot and loop numbers change, so
`ensure_attached` finds the image's current device (`losetup --associated`) or attaches it again and
mounts it if nothing is mounted at its mount directory. Commands come from
`cdi.embedded.volumes.commands` and run through an injected `cdi.toolrun` runner.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from cdi.api.core import VolumeMode
from cdi.embedded.volumes import commands
from cdi.embedded.volumes.errors import (
    UnsupportedFilesystem,
    VolumeConflict,
    VolumeMissing,
    VolumeToolFailed,
    VolumeTooSmall,
    translated_os_errors,
)
from cdi.embedded.volumes.pool import VolumeInfo
from cdi.toolrun import Completed, ToolError, ToolRunner, run_tool

MOUNTINFO = Path("/proc/self/mountinfo")


class LoopPool:
    """Volumes as image files on loop devices under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, fs_type: str = "ext4", runner: ToolRunner = run_tool,
                 mountinfo: Path = MOUNTINFO) -> None:
        check_filesystem(fs_type)
        self._root = root.resolve()
        self._fs_type = fs_type
        self._run_tool = runner
        self._mountinfo = mountinfo
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def kind(self) -> str:
        return "loop"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def fs_type(self) -> str:
        """The filesystem Filesystem volumes get unless a StorageClass asks for another."""
        return self._fs_type

    def image_path(self, name: str) -> Path:
        return self._root / "images" / f"{name}.img"

    def mount_path(self, name: str) -> Path:
        return self._root / "mounts" / name

    def owns(self, info: VolumeInfo) -> bool:
        return info.pool == self.kind and info.backing == str(self.image_path(info.name))

    async def create_volume(self, name: str, size_bytes: int, volume_mode: VolumeMode, *,
                            fs_type: str | None = None) -> VolumeInfo:
        fs = None if volume_mode == VolumeMode.BLOCK else check_filesystem(fs_type or self._fs_type, size_bytes)
        async with self._locks[name]:
            image = self.image_path(name)
            if image.exists():
                _check_size(name, image, size_bytes)
            else:
                await self._make_image(name, size_bytes, fs)
            info = VolumeInfo(name=name, volume_mode=volume_mode, size_bytes=size_bytes, path="",
                              backing=str(image), pool=self.kind, fs_type=fs)
            return await self._attach(info)

    async def ensure_attached(self, info: VolumeInfo) -> VolumeInfo:
        if not self.owns(info):
            raise VolumeConflict(f"volume {info.name} is kept in {info.backing}, not in the loop pool at {self._root}")
        async with self._locks[info.name]:
            if not Path(info.backing).exists():
                raise VolumeMissing(f"the image {info.backing} holding volume {info.name} is gone; its data is lost")
            return await self._attach(info)

    async def delete_volume(self, info: VolumeInfo) -> None:
        name = info.name
        async with self._locks[name]:
            mount_dir = self.mount_path(name)
            if commands.mount_at(self._mounts(), str(mount_dir)) is not None:
                await self._run(commands.umount_argv(str(mount_dir)), f"unmounting volume {name}")
            image = self.image_path(name)
            if image.exists():
                for device in await self._devices_of(image):
                    await self._run(commands.detach_argv(device), f"detaching volume {name} from {device}")
            with translated_os_errors(f"deleting volume {name}"):
                image.unlink(missing_ok=True)
                self._partial_path(name).unlink(missing_ok=True)
                if mount_dir.exists() and commands.mount_at(self._mounts(), str(mount_dir)) is None:
                    shutil.rmtree(mount_dir)

    async def volume_names(self) -> list[str]:
        images = self._root / "images"
        return sorted(path.name.removesuffix(".img") for path in images.glob("*.img")) if images.is_dir() else []

    async def _make_image(self, name: str, size_bytes: int, fs_type: str | None) -> None:
        partial = self._partial_path(name)
        with translated_os_errors(f"creating the image for volume {name}"):
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)  # a crash left half an image: start it again
            with open(partial, "xb") as image:
                image.truncate(size_bytes)  # sparse: takes no space until written
        if fs_type is not None:
            await self._run(commands.mkfs_argv(fs_type, str(partial)), f"formatting volume {name} as {fs_type}")
        with translated_os_errors(f"creating the image for volume {name}"):
            os.replace(partial, self.image_path(name))

    async def _attach(self, info: VolumeInfo) -> VolumeInfo:
        """Attach (and for Filesystem volumes mount) `info`'s image unless it already is."""
        mount_dir = self.mount_path(info.name)
        if info.volume_mode == VolumeMode.FILESYSTEM and commands.mount_at(self._mounts(), str(mount_dir)):
            return info.at(str(mount_dir))
        image = Path(info.backing)
        devices = await self._devices_of(image)
        if devices:
            device = devices[0]
        else:
            attached = await self._run(commands.attach_argv(str(image)), f"attaching volume {info.name}")
            device = commands.parse_device(attached.stdout)
        if info.volume_mode == VolumeMode.BLOCK:
            return info.at(device)
        with translated_os_errors(f"creating the mount directory of volume {info.name}"):
            mount_dir.mkdir(parents=True, exist_ok=True)
        fs_type = info.fs_type or self._fs_type
        await self._run(commands.mount_argv(fs_type, device, str(mount_dir)), f"mounting volume {info.name}")
        return info.at(str(mount_dir))

    async def _devices_of(self, image: Path) -> list[str]:
        listed = await self._run(commands.associated_argv(str(image)), f"looking up the loop devices of {image}")
        return commands.parse_devices(listed.stdout)

    def _mounts(self) -> list[commands.MountEntry]:
        with translated_os_errors(f"reading {self._mountinfo}"):
            return commands.parse_mountinfo(self._mountinfo.read_text())

    def _partial_path(self, name: str) -> Path:
        return self._root / "images" / f".{name}.img.partial"

    async def _run(self, argv: Sequence[str], doing: str) -> Completed:
        try:
            return (await self._run_tool(argv)).check()
        except ToolError as e:
            raise VolumeToolFailed(f"{doing}: {e}") from e


def check_filesystem(fs_type: str, size_bytes: int | None = None) -> str:
    """`fs_type` if the pool can make that filesystem (on `size_bytes`); terminal errors otherwise."""
    if fs_type not in commands.SUPPORTED_FILESYSTEMS:
        raise UnsupportedFilesystem(f"fsType {fs_type!r} is not supported; use one of "
                                    f"{', '.join(commands.SUPPORTED_FILESYSTEMS)}")
    smallest = commands.MIN_FILESYSTEM_BYTES[fs_type]
    if size_bytes is not None and size_bytes < smallest:
        raise VolumeTooSmall(f"{fs_type} needs at least {smallest // commands.MIB} MiB; "
                             f"the volume would be {size_bytes / commands.MIB:g} MiB")
    return fs_type


def _check_size(name: str, image: Path, size_bytes: int) -> None:
    with translated_os_errors(f"inspecting the image of volume {name}"):
        existing = image.stat().st_size
    if existing != size_bytes:
        raise VolumeConflict(f"volume {name} already exists with {existing} bytes, not the {size_bytes} asked for")
