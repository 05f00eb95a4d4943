"""Growing a loop volume in place: its image file, its loop device, and the filesystem on it.

`LoopPool` calls these with its tool runner while it holds the volume's lock; tool failures become
`VolumeToolFailed` here. `fit_filesystem` is what makes a mounted Filesystem volume offer its files
the whole capacity, as a CSI driver's volume does: it measures the room files have (statfs plus what
the files there occupy) and, while that falls short, grows the filesystem to fill the image and then
the image itself (by the step `cdi.embedded.volumes.fit.next_image_size` plans), making the loop
device see the new size (`losetup --set-capacity`) before resize2fs or xfs_growfs grow the mounted
filesystem online. It runs after a volume is made, when it is mounted again (so an expansion that was
interrupted finishes "at the next mount", as kubelet's would) and for an expansion's node step.

Where the kernel refuses to resize a mounted ext4 (resize2fs needs CAP_SYS_RESOURCE, which containers
often lack; xfs_growfs needs only CAP_SYS_ADMIN), the filesystem is grown offline: unmounted, checked
(e2fsck, which resize2fs insists on), grown and mounted again, but only when the caller says nobody can
be using it (`may_unmount`); otherwise `VolumeInUse`, and it grows once the pods using it are gone,
like a CSI driver without online expansion. Block volumes only need their image and device grown
(`grow_block`).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cdi.embedded.volumes import commands
from cdi.embedded.volumes.errors import VolumeInUse, VolumeNotGrown, VolumeToolFailed, translated_os_errors
from cdi.embedded.volumes.fit import MAX_GROWTH_STEPS, MIB, next_image_size, room
from cdi.toolrun import Completed, ToolError, ToolFailed, ToolRunner

_log = logging.getLogger(__name__)


async def run_checked(runner: ToolRunner, argv: Sequence[str], doing: str, *, ok: tuple[int, ...] = (0,)) -> Completed:
    """Run a tool; a failure (or an exit status not in `ok`) is a retryable `VolumeToolFailed`."""
    try:
        done = await runner(argv)
        if done.returncode not in ok:
            done.check()
        return done
    except ToolError as e:
        raise VolumeToolFailed(f"{doing}: {e}") from e


def grow_file(image: Path, size: int) -> bool:
    """Extend `image` (sparsely) to `size` bytes; never shrinks it. Whether it grew."""
    with translated_os_errors(f"growing the image {image}"):
        if image.stat().st_size >= size:
            return False
        with open(image, "r+b") as backing:
            backing.truncate(size)
            os.fsync(backing.fileno())
    return True


def device_size(device: str) -> int:
    with translated_os_errors(f"reading the size of {device}"):
        fd = os.open(device, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)


def file_bytes(root: Path) -> int:
    """Bytes the regular files under `root` occupy on its filesystem (each inode once; other mounts
    below `root` not counted). Directories are left out: their blocks are never available to files."""
    seen: set[int] = set()
    total = 0
    top = os.lstat(root).st_dev
    pending = [str(root)]
    while pending:
        for info, path in _entries(pending.pop()):
            if info.st_dev != top:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(path)
            elif info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_blocks * 512
    return total


def _entries(directory: str) -> list[tuple[os.stat_result, str]]:
    """The entries of `directory` with their lstat; what a pod deletes meanwhile is skipped."""
    found = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    found.append((entry.stat(follow_symlinks=False), entry.path))
                except FileNotFoundError:
                    continue
    except FileNotFoundError:
        pass
    return found


def measure_room(mount_dir: Path) -> int:
    """The space files have on the filesystem mounted at `mount_dir` (see `cdi.embedded.volumes.fit.room`)."""
    with translated_os_errors(f"measuring the filesystem at {mount_dir}"):
        st = os.statvfs(mount_dir)
        return room(st.f_bavail * st.f_frsize, file_bytes(mount_dir))


async def fit_filesystem(runner: ToolRunner, *, name: str, image: Path, device: str, mount_dir: Path, fs_type: str,
                         capacity: int, may_unmount: bool) -> None:
    """Grow the volume until the filesystem mounted at `mount_dir` offers files `capacity` bytes."""
    filled = False  # the filesystem was grown to fill the image as it is now
    for step in range(MAX_GROWTH_STEPS + 1):
        with translated_os_errors(f"inspecting the image of volume {name}"):
            image_size = image.stat().st_size
        measured = measure_room(mount_dir)
        grown = next_image_size(image_size, capacity, measured)
        if grown is None:
            return
        if step == MAX_GROWTH_STEPS:
            break
        if filled:
            grow_file(image, grown)
            _log.info("volume %s: its %s filesystem offers files %d bytes of %d; image grown to %d bytes",
                      name, fs_type, measured, capacity, grown)
        await run_checked(runner, commands.set_capacity_argv(device), f"growing the loop device {device} of volume "
                                                                      f"{name}")
        await _grow_filesystem(runner, name=name, device=device, mount_dir=mount_dir, fs_type=fs_type,
                               may_unmount=may_unmount)
        filled = True
    raise VolumeNotGrown(f"the {fs_type} filesystem of volume {name} offers files {measured / MIB:.1f} MiB "
                         f"after growing its image {MAX_GROWTH_STEPS} times; it should offer {capacity / MIB:g} MiB")


async def _grow_filesystem(runner: ToolRunner, *, name: str, device: str, mount_dir: Path, fs_type: str,
                           may_unmount: bool) -> None:
    doing = f"growing the {fs_type} filesystem of volume {name}"
    try:
        (await runner(commands.grow_filesystem_argv(fs_type, device, str(mount_dir)))).check()
        return
    except ToolFailed as e:
        if fs_type != "ext4" or not commands.online_resize_refused(e.stderr):
            raise VolumeToolFailed(f"{doing}: {e}") from e
    except ToolError as e:
        raise VolumeToolFailed(f"{doing}: {e}") from e
    if not may_unmount:
        raise VolumeInUse(f"the ext4 filesystem of volume {name} can grow only while no pod uses it, because this "
                          f"machine does not allow resizing a mounted ext4 filesystem (resize2fs needs "
                          f"CAP_SYS_RESOURCE); it grows once the pods using the volume have finished")
    _log.info("volume %s: resizing a mounted ext4 is not allowed here; growing it unmounted", name)
    await run_checked(runner, commands.umount_argv(str(mount_dir)), f"unmounting volume {name} to grow it")
    try:
        await run_checked(runner, commands.check_filesystem_argv(device), f"checking volume {name}", ok=(0, 1))
        await run_checked(runner, commands.grow_filesystem_argv(fs_type, device, str(mount_dir)), doing)
    finally:
        await run_checked(runner, commands.mount_argv(fs_type, device, str(mount_dir)), f"mounting volume {name}")


async def grow_block(runner: ToolRunner, *, name: str, image: Path, device: str, size: int) -> None:
    """Make a Block volume's image and loop device at least `size` bytes."""
    grow_file(image, size)
    if device_size(device) < size:
        await run_checked(runner, commands.set_capacity_argv(device), f"growing the loop device {device} of volume "
                                                                      f"{name}")
