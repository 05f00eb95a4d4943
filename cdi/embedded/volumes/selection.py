"""Choosing the embedded mode's storage pool: loop devices when this machine has them, directories if not.

`cdi serve` calls `open_pool` once at start-up, before `ensure_all_attached` and the provisioner's
controllers. The probe attaches and detaches a 1 MiB sparse file with the same runner the pool will
use and checks that the filesystem's mkfs and mount are installed; the choice is logged, because it
decides whether volumes have enforced capacity (`LoopPool`) or not (`DirectoryPool`).

Snapshots and clones should be O(1), which needs a filesystem with reflink. When loop devices work
and the pool directory's filesystem has none (FICLONE refused on a probe file), the `LoopPool` keeps
its images on an XFS image with reflink made (once) and mounted under the pool directory
(`cdi.embedded.volumes.reflinkfs`); if that cannot be made, the pool still works, with sparse copies.
`reflink_pool_bytes=None` turns this off.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cdi.embedded.volumes import commands
from cdi.embedded.volumes.copying import supports_reflink
from cdi.embedded.volumes.directory import DirectoryPool
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.loop import LoopPool, check_filesystem
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.reflinkfs import DEFAULT_POOL_BYTES, ensure_reflink_filesystem, pool_image
from cdi.toolrun import ToolError, ToolRunner, run_tool

_log = logging.getLogger(__name__)
_PROBE_SIZE = 1024 * 1024


async def loop_devices_work(root: Path, *, fs_type: str = "ext4", runner: ToolRunner = run_tool) -> tuple[bool, str]:
    """Whether a `LoopPool` can work under `root`, and why not when it cannot."""
    missing = [tool for tool in (f"mkfs.{fs_type}", "mount", "umount", "losetup") if shutil.which(tool) is None]
    if missing:
        return False, f"{', '.join(missing)} not installed"
    probe = root / ".loop-probe.img"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as image:
            image.truncate(_PROBE_SIZE)
        attached = (await runner(commands.attach_argv(str(probe)))).check()
        device = commands.parse_device(attached.stdout)
        (await runner(commands.detach_argv(device))).check()
    except (OSError, ToolError, ValueError) as e:
        return False, str(e)
    finally:
        probe.unlink(missing_ok=True)
    return True, ""


async def open_pool(root: Path, *, fs_type: str = "ext4", runner: ToolRunner = run_tool,
                    reflink_pool_bytes: int | None = DEFAULT_POOL_BYTES) -> StoragePool:
    """The pool for `root`: a `LoopPool` formatting `fs_type` if loop devices work (its images on a
    reflink filesystem, see the module docstring), else a `DirectoryPool`."""
    check_filesystem(fs_type)
    works, why_not = await loop_devices_work(root, fs_type=fs_type, runner=runner)
    if works:
        data, reflink = await _data_directory(root, runner, reflink_pool_bytes)
        _log.info("storage pool at %s: loop devices work; volumes are %s images with enforced capacity; "
                  "snapshots and clones are %s", root, fs_type, "reflinks (O(1))" if reflink else "sparse copies")
        return LoopPool(root, fs_type=fs_type, runner=runner, data=data, reflink=reflink)
    _log.warning("storage pool at %s: loop devices do not work (%s); volumes are plain directories without "
                 "capacity enforcement and Block volumes are unavailable", root, why_not)
    return DirectoryPool(root)


async def _data_directory(root: Path, runner: ToolRunner, size_bytes: int | None) -> tuple[Path, bool]:
    """Where the loop pool keeps images, and whether it can reflink there."""
    if pool_image(root).exists() or (size_bytes is not None and not supports_reflink(root)
                                     and shutil.which("mkfs.xfs") is not None):
        try:
            data = await ensure_reflink_filesystem(root, runner, size_bytes=size_bytes or DEFAULT_POOL_BYTES)
            return data, supports_reflink(data)
        except (VolumeError, OSError) as e:
            _log.warning("storage pool at %s: no reflink filesystem (%s); snapshots and clones copy data", root, e)
    return root, supports_reflink(root)
