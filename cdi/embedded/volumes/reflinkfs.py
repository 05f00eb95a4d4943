"""The pool filesystem: an XFS image with reflink, so volume snapshots and clones are O(1) anywhere.

When the pool directory's own filesystem cannot reflink (ext4, as on most hosts), `open_pool`
(`cdi.embedded.volumes.selection`) calls `ensure_reflink_filesystem`: once, it makes a large sparse
image `reflink-pool.img` under the pool directory, formatted `mkfs.xfs -m reflink=1`, and from then
on, at every start (loop devices and mounts do not survive a reboot), attaches it to a loop device
and mounts it at `reflink/`. `LoopPool` keeps its volume images and snapshots there. The image is
thin: it takes host space only for what volumes hold (plus XFS's 64 MiB log), so its nominal size
(1 TiB by default) is a ceiling, not a reservation; its free space is what `df` shows for `reflink/`.

Like the pools' images, it is built as a hidden `.partial` file and renamed into place only once
formatted, so a crash never leaves a half-made pool that would be mounted later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from cdi.embedded.volumes import commands
from cdi.embedded.volumes.errors import translated_os_errors
from cdi.embedded.volumes.growth import run_checked
from cdi.toolrun import ToolRunner

DEFAULT_POOL_BYTES: Final = 1 << 40  # 1 TiB, sparse
POOL_IMAGE: Final = "reflink-pool.img"
POOL_MOUNT: Final = "reflink"
_log = logging.getLogger(__name__)


def pool_image(root: Path) -> Path:
    return root / POOL_IMAGE


def pool_mount(root: Path) -> Path:
    return root / POOL_MOUNT


async def ensure_reflink_filesystem(root: Path, runner: ToolRunner, *, size_bytes: int = DEFAULT_POOL_BYTES,
                                    mountinfo: Path = Path("/proc/self/mountinfo")) -> Path:
    """Make (once), attach and mount the pool filesystem under `root`; returns where it is mounted.
    Raises `VolumeError` (a tool failed, the directory cannot be written)."""
    image, mount_dir = pool_image(root), pool_mount(root)
    with translated_os_errors(f"reading {mountinfo}"):
        mounted = commands.mount_at(commands.parse_mountinfo(mountinfo.read_text()), str(mount_dir))
    if mounted is not None:
        return mount_dir
    if not image.exists():
        await _make_image(root, image, runner, size_bytes)
    listed = await run_checked(runner, commands.associated_argv(str(image)), f"looking up the loop device of {image}")
    devices = commands.parse_devices(listed.stdout)
    if devices:
        device = devices[0]
    else:
        attached = await run_checked(runner, commands.attach_argv(str(image)), f"attaching the pool image {image}")
        device = commands.parse_device(attached.stdout)
    with translated_os_errors(f"creating {mount_dir}"):
        mount_dir.mkdir(parents=True, exist_ok=True)
    await run_checked(runner, commands.mount_argv("xfs", device, str(mount_dir)), f"mounting the pool image {image}")
    _log.info("storage pool at %s: volume images live on the reflink-capable xfs %s mounted at %s",
              root, image, mount_dir)
    return mount_dir


async def _make_image(root: Path, image: Path, runner: ToolRunner, size_bytes: int) -> None:
    partial = root / f".{POOL_IMAGE}.partial"
    with translated_os_errors(f"creating the pool image {image}"):
        root.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        with open(partial, "xb") as made:
            made.truncate(size_bytes)
    await run_checked(runner, commands.mkfs_reflink_pool_argv(str(partial)), f"formatting the pool image {image}")
    with translated_os_errors(f"creating the pool image {image}"):
        os.replace(partial, image)
    _log.info("storage pool at %s: made a %d GiB sparse xfs image with reflink, %s", root, size_bytes >> 30, image)
