"""`LoopPool`: each volume is one sparse image file on a loop device, the embedded mode's default pool.

Layout under the pool directory (`data` is the pool directory itself, or the reflink-capable xfs
filesystem `reflink/` that `cdi.embedded.volumes.reflinkfs` mounts there when the pool directory's own
filesystem cannot reflink; images of volumes made before that are found under the pool directory):

    <data>/images/<pv-name>.img      the volume's data: a sparse file (a Block volume's is exactly its size)
    <data>/snapshots/<handle>.img    a snapshot: a reflink (or sparse) copy of an image, with <handle>.json
    mounts/<pv-name>/                where a Filesystem volume's image is mounted (the PV's path)

A Filesystem volume is formatted (ext4 by default, xfs on request) and mounted, and like a CSI
driver's volume its files get the whole capacity: the image is made bigger than the capacity by the
filesystem's own overhead, estimated (`cdi.embedded.volumes.fit`), then measured once mounted and
grown until it is enough (`cdi.embedded.volumes.growth`); pods still see real ENOSPC once the
filesystem is full. A Block volume's path is its loop device (`/dev/loopN`). An image is built as a
hidden `.partial` file and renamed into place only once formatted, so an existing `<pv-name>.img` is
always complete and `create_volume` after a crash reuses it instead of leaking a second one. Loop
devices and mounts do not survive a reboot and loop numbers change, so `ensure_attached` finds the
image's current device (`losetup --associated`) or attaches it again, mounts it if nothing is mounted
at its mount directory, and grows it if it is smaller than its capacity (an expansion cut short).
Expansion is two steps, as a CSI driver's: `expand_volume` grows the image and loop device (the
controller's part), `expand_filesystem` the mounted filesystem (the node's part). A snapshot or clone
copies the image (`cdi.embedded.volumes.copying`) while the volume's mounted filesystem is frozen
(fsfreeze, always thawed) or its loop device's buffers are flushed (Block). Commands come from
`cdi.embedded.volumes.commands` and run through an injected `cdi.toolrun` runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from cdi.api.core import VolumeMode
from cdi.embedded.volumes import commands
from cdi.embedded.volumes.copying import clone_file, flush_block_device, supports_reflink
from cdi.embedded.volumes.errors import (
    SnapshotMissing,
    UnsupportedFilesystem,
    VolumeConflict,
    VolumeInUse,
    VolumeMissing,
    translated_os_errors,
)
from cdi.embedded.volumes.fit import first_image_size
from cdi.embedded.volumes.growth import fit_filesystem, grow_block, grow_file, run_checked
from cdi.embedded.volumes.pool import SnapshotInfo, VolumeInfo
from cdi.embedded.volumes.snapshotfiles import SnapshotFiles
from cdi.toolrun import Completed, ToolRunner, run_tool

MOUNTINFO = Path("/proc/self/mountinfo")
_log = logging.getLogger(__name__)


class LoopPool:
    """Volumes as image files on loop devices under `root` (see the module docstring)."""

    def __init__(self, root: Path, *, fs_type: str = "ext4", runner: ToolRunner = run_tool,
                 mountinfo: Path = MOUNTINFO, data: Path | None = None, reflink: bool | None = None,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        check_filesystem(fs_type)
        self._root = root.resolve()
        self._data = (data or root).resolve()  # where new images and snapshots go (the reflink filesystem)
        self._fs_type = fs_type
        self._run_tool = runner
        self._mountinfo = mountinfo
        self._reflink = reflink
        self._now_ns = now_ns
        self._snapshots = SnapshotFiles(self._data / "snapshots", ".img")
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

    @property
    def data(self) -> Path:
        """The directory holding new images and snapshots: `root`, or the reflink filesystem under it."""
        return self._data

    @property
    def supports_reflink(self) -> bool:
        if self._reflink is None:
            with translated_os_errors(f"probing {self._data} for reflink support"):
                self._data.mkdir(parents=True, exist_ok=True)
                self._reflink = supports_reflink(self._data)
        return self._reflink

    def image_path(self, name: str) -> Path:
        return self._data / "images" / f"{name}.img"

    def _image_dirs(self) -> list[Path]:
        """Where images are: the data directory's, and `root`'s (volumes made before the reflink filesystem)."""
        return list(dict.fromkeys((self._data / "images", self._root / "images")))

    def _find_image(self, name: str) -> Path | None:
        return next((d / f"{name}.img" for d in self._image_dirs() if (d / f"{name}.img").exists()), None)

    def mount_path(self, name: str) -> Path:
        return self._root / "mounts" / name

    def owns(self, info: VolumeInfo) -> bool:
        return info.pool == self.kind and info.backing in {str(d / f"{info.name}.img") for d in self._image_dirs()}

    async def create_volume(self, name: str, size_bytes: int, volume_mode: VolumeMode, *,
                            fs_type: str | None = None) -> VolumeInfo:
        fs = None if volume_mode == VolumeMode.BLOCK else check_filesystem(fs_type or self._fs_type)
        async with self._locks[name]:
            image = self._find_image(name) or self.image_path(name)
            if image.exists():
                _check_size(name, image, size_bytes, exact=fs is None)
            else:
                await self._make_image(name, size_bytes if fs is None else first_image_size(fs, size_bytes), fs)
            info = VolumeInfo(name=name, volume_mode=volume_mode, size_bytes=size_bytes, path="",
                              backing=str(image), pool=self.kind, fs_type=fs)
            return await self._attach(info, may_unmount=True)  # no pod can use a volume still being made

    async def ensure_attached(self, info: VolumeInfo) -> VolumeInfo:
        async with self._locks[info.name]:
            self._existing_image(info)
            mount_dir = str(self.mount_path(info.name))
            if info.volume_mode == VolumeMode.FILESYSTEM and commands.mount_at(self._mounts(), mount_dir):
                # a process that died while snapshotting it may have left it frozen: writers would hang
                await run_checked(self._run_tool, commands.unfreeze_argv(mount_dir), f"thawing volume {info.name}",
                                  ok=(0, 1))  # 1: it was not frozen
            try:
                return await self._attach(info, may_unmount=False)
            except VolumeInUse as e:  # mounted, in use, and short: its claim's expansion finishes it later
                _log.warning("%s", e)
                return info.at(str(self.mount_path(info.name)))

    def _existing_image(self, info: VolumeInfo) -> Path:
        if not self.owns(info):
            raise VolumeConflict(f"volume {info.name} is kept in {info.backing}, not in the loop pool at {self._root}")
        if not Path(info.backing).exists():
            raise VolumeMissing(f"the image {info.backing} holding volume {info.name} is gone; its data is lost")
        return Path(info.backing)

    async def expand_volume(self, info: VolumeInfo, size_bytes: int) -> VolumeInfo:
        """The controller's part of an expansion: the image and loop device grow (a Filesystem volume's
        image by at least as much as its capacity, its filesystem's overhead on top being fitted by
        `expand_filesystem`); returns the volume with its new size. Growing to a size it has is a no-op."""
        grown = replace(info, size_bytes=max(size_bytes, info.size_bytes))
        async with self._locks[info.name]:
            image = self._existing_image(info)
            if info.volume_mode == VolumeMode.FILESYSTEM:
                with translated_os_errors(f"inspecting the image of volume {info.name}"):
                    current = image.stat().st_size
                wanted = max(first_image_size(info.fs_type or self._fs_type, grown.size_bytes),
                             current + grown.size_bytes - info.size_bytes)
            else:
                wanted = grown.size_bytes
            if grow_file(image, wanted):
                for device in await self._devices_of(image):
                    await self._run(commands.set_capacity_argv(device), f"growing the loop device {device} "
                                                                          f"of volume {info.name}")
        return grown

    async def expand_filesystem(self, info: VolumeInfo, *, in_use: bool = False) -> VolumeInfo:
        """The node's part of an expansion: the mounted filesystem grows to offer `info.size_bytes`
        (unmounting it for that, where it must, only if no pod uses it)."""
        async with self._locks[info.name]:
            self._existing_image(info)
            return await self._attach(info, may_unmount=not in_use)

    async def delete_volume(self, info: VolumeInfo) -> None:
        name = info.name
        async with self._locks[name]:
            mount_dir = self.mount_path(name)
            if commands.mount_at(self._mounts(), str(mount_dir)) is not None:
                await self._run(commands.umount_argv(str(mount_dir)), f"unmounting volume {name}")
            for image in (d / f"{name}.img" for d in self._image_dirs()):
                if image.exists():
                    for device in await self._devices_of(image):
                        await self._run(commands.detach_argv(device), f"detaching volume {name} from {device}")
                with translated_os_errors(f"deleting volume {name}"):
                    image.unlink(missing_ok=True)
            with translated_os_errors(f"deleting volume {name}"):
                self._partial_path(name).unlink(missing_ok=True)
                if mount_dir.exists() and commands.mount_at(self._mounts(), str(mount_dir)) is None:
                    shutil.rmtree(mount_dir)

    async def volume_names(self) -> list[str]:
        return sorted({path.name.removesuffix(".img") for images in self._image_dirs() if images.is_dir()
                       for path in images.glob("*.img")})

    async def snapshot_volume(self, info: VolumeInfo, handle: str, *, in_use: bool = False) -> SnapshotInfo:
        """A reflink (or sparse) copy of the volume's image, taken while its filesystem is frozen or its
        device's buffers are flushed; `in_use` does not matter, as freezing makes any volume consistent."""
        async with self._locks[info.name]:
            taken = self._snapshots.read(handle)
            if taken is not None:
                return taken
            image = self._existing_image(info)
            partial = self._snapshots.prepare(handle)
            async with self._quiesced(info):
                created = self._now_ns()
                method = await self._copy(image, partial, f"snapshotting volume {info.name}")
            return self._snapshots.commit(SnapshotInfo(
                handle=handle, source_volume=info.name, volume_mode=info.volume_mode, size_bytes=info.size_bytes,
                backing=str(self._snapshots.backing(handle)), pool=self.kind, created_ns=created,
                fs_type=info.fs_type, method=method))

    async def get_snapshot(self, handle: str) -> SnapshotInfo | None:
        return self._snapshots.read(handle)

    async def delete_snapshot(self, handle: str) -> None:
        async with self._locks[f"snapshot {handle}"]:
            self._snapshots.delete(handle)

    async def create_volume_from(self, name: str, size_bytes: int, source: VolumeInfo | SnapshotInfo, *,
                                 in_use: bool = False) -> VolumeInfo:
        """The volume as a copy of `source`'s image (reflink where possible; a source volume frozen or
        flushed, so `in_use` does not matter), attached; a Block volume's device and a Filesystem volume's
        filesystem then grow to `size_bytes` as an expansion would."""
        async with self._locks[name]:
            image = self._find_image(name)
            if image is None:
                image = self.image_path(name)
                partial = self._partial_path(name)
                with translated_os_errors(f"creating the image for volume {name}"):
                    partial.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, SnapshotInfo):
                    if not Path(source.backing).exists():
                        raise SnapshotMissing(f"snapshot {source.handle} is gone from {source.backing}")
                    await self._copy(Path(source.backing), partial, f"restoring snapshot {source.handle}")
                else:
                    async with self._locks[source.name]:
                        origin = self._existing_image(source)
                        async with self._quiesced(source):
                            await self._copy(origin, partial, f"cloning volume {source.name}")
                with translated_os_errors(f"creating the image for volume {name}"):
                    os.replace(partial, image)
            info = VolumeInfo(name=name, volume_mode=source.volume_mode, size_bytes=max(size_bytes, source.size_bytes),
                              path="", backing=str(image), pool=self.kind, fs_type=source.fs_type)
            return await self._attach(info, may_unmount=True)

    @contextlib.asynccontextmanager
    async def _quiesced(self, info: VolumeInfo) -> AsyncIterator[None]:
        """Make the image a consistent copy source: freeze a mounted filesystem (always thawed again), or
        flush a Block volume's loop devices."""
        mount_dir = str(self.mount_path(info.name))
        if info.volume_mode == VolumeMode.FILESYSTEM and commands.mount_at(self._mounts(), mount_dir) is not None:
            await self._run(commands.freeze_argv(mount_dir), f"freezing the filesystem of volume {info.name}")
            try:
                yield
            finally:
                await self._run(commands.unfreeze_argv(mount_dir), f"thawing the filesystem of volume {info.name}")
            return
        for device in await self._devices_of(Path(info.backing)):
            with translated_os_errors(f"flushing {device} of volume {info.name}"):
                await asyncio.to_thread(flush_block_device, device)
        yield

    async def _copy(self, source: Path, target: Path, doing: str) -> str:
        with translated_os_errors(doing):
            return await asyncio.to_thread(clone_file, source, target)

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

    async def _attach(self, info: VolumeInfo, *, may_unmount: bool) -> VolumeInfo:
        """Attach (and for Filesystem volumes mount) `info`'s image unless it already is, and grow it
        to its capacity if it falls short (unmounting a filesystem already mounted only if `may_unmount`)."""
        image, mount_dir = Path(info.backing), self.mount_path(info.name)
        mounted = commands.mount_at(self._mounts(), str(mount_dir))
        if info.volume_mode == VolumeMode.FILESYSTEM and mounted is not None:
            device = mounted.source
        else:
            may_unmount = True  # mounted just now: nobody uses it yet
            device = await self._device_for(info)
            if info.volume_mode == VolumeMode.BLOCK:
                await grow_block(self._run_tool, name=info.name, image=image, device=device, size=info.size_bytes)
                return info.at(device)
            with translated_os_errors(f"creating the mount directory of volume {info.name}"):
                mount_dir.mkdir(parents=True, exist_ok=True)
            await self._run(commands.mount_argv(info.fs_type or self._fs_type, device, str(mount_dir)),
                            f"mounting volume {info.name}")
        await fit_filesystem(self._run_tool, name=info.name, image=image, device=device, mount_dir=mount_dir,
                             fs_type=info.fs_type or self._fs_type, capacity=info.size_bytes, may_unmount=may_unmount)
        return info.at(str(mount_dir))

    async def _device_for(self, info: VolumeInfo) -> str:
        """The loop device `info`'s image is attached to, attaching it if it is not."""
        devices = await self._devices_of(Path(info.backing))
        if devices:
            return devices[0]
        attached = await self._run(commands.attach_argv(info.backing), f"attaching volume {info.name}")
        return commands.parse_device(attached.stdout)

    async def _devices_of(self, image: Path) -> list[str]:
        listed = await self._run(commands.associated_argv(str(image)), f"looking up the loop devices of {image}")
        return commands.parse_devices(listed.stdout)

    def _mounts(self) -> list[commands.MountEntry]:
        with translated_os_errors(f"reading {self._mountinfo}"):
            return commands.parse_mountinfo(self._mountinfo.read_text())

    def _partial_path(self, name: str) -> Path:
        return self._data / "images" / f".{name}.img.partial"

    async def _run(self, argv: Sequence[str], doing: str) -> Completed:
        return await run_checked(self._run_tool, argv, doing)


def check_filesystem(fs_type: str) -> str:
    """`fs_type` if the pool can make that filesystem; `UnsupportedFilesystem` otherwise."""
    if fs_type not in commands.SUPPORTED_FILESYSTEMS:
        raise UnsupportedFilesystem(f"fsType {fs_type!r} is not supported; use one of "
                                    f"{', '.join(commands.SUPPORTED_FILESYSTEMS)}")
    return fs_type


def _check_size(name: str, image: Path, size_bytes: int, *, exact: bool) -> None:
    """An existing image serves a create of `size_bytes` if it is that size (Block) or at least that
    size (Filesystem: its filesystem's overhead comes on top, and attaching fits the rest)."""
    with translated_os_errors(f"inspecting the image of volume {name}"):
        existing = image.stat().st_size
    if existing < size_bytes or (exact and existing != size_bytes):
        raise VolumeConflict(f"volume {name} already exists with a {existing}-byte image, which cannot hold "
                             f"the {size_bytes} bytes asked for")
