"""`LoopPool` on real loop devices, mkfs and mount: capacity (files get all of it, the filesystem's
overhead on top), ENOSPC, Block size, deletion and re-attachment after the mounts and loop devices went
away (as after a reboot)."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.errors import VolumeConflict, VolumeMissing
from cdi.embedded.volumes.loop import LoopPool
from tests.volumes.support import (
    MIB,
    attach_at,
    backing_files,
    block_size,
    detach,
    loop_devices_of,
    mounted_at,
    unmount,
)


def fill(directory: str, total: int, name: str = "fill.bin") -> int:
    """Write up to `total` bytes into a new file; returns how many were written before ENOSPC."""
    written = 0
    chunk = b"\xa5" * MIB
    with open(Path(directory) / name, "wb") as out:
        while written < total:
            written += out.write(chunk[: min(MIB, total - written)])
        out.flush()
        os.fsync(out.fileno())
    return written


async def test_filesystem_volume_holds_its_capacity_and_then_runs_out_of_space(loop_pool: LoopPool) -> None:
    info = await loop_pool.create_volume("pvc-a", 64 * MIB, VolumeMode.FILESYSTEM)

    assert info.path == str(loop_pool.mount_path("pvc-a"))
    assert mounted_at(info.path) == "ext4"
    image = loop_pool.image_path("pvc-a")
    assert 64 * MIB < image.stat().st_size < 80 * MIB  # the filesystem's overhead comes on top
    assert image.stat().st_blocks * 512 < 8 * MIB  # sparse
    stats = os.statvfs(info.path)
    assert stats.f_bavail * stats.f_frsize >= 64 * MIB
    assert fill(info.path, 64 * MIB) == 64 * MIB
    with pytest.raises(OSError) as raised:
        fill(info.path, 16 * MIB, "more.bin")
    assert raised.value.errno == errno.ENOSPC


async def test_block_volume_is_a_loop_device_of_exactly_the_size(loop_pool: LoopPool) -> None:
    info = await loop_pool.create_volume("pvc-b", 16 * MIB, VolumeMode.BLOCK)

    assert info.path.startswith("/dev/loop")
    assert block_size(info.path) == 16 * MIB
    assert loop_devices_of(loop_pool.image_path("pvc-b")) == [info.path]
    assert not loop_pool.mount_path("pvc-b").exists()
    assert info.fs_type is None


async def test_delete_unmounts_detaches_and_removes(loop_pool: LoopPool) -> None:
    fs = await loop_pool.create_volume("pvc-f", 16 * MIB, VolumeMode.FILESYSTEM)
    block = await loop_pool.create_volume("pvc-b", 16 * MIB, VolumeMode.BLOCK)
    images = [loop_pool.image_path("pvc-f"), loop_pool.image_path("pvc-b")]
    devices = loop_devices_of(images[0]) + loop_devices_of(images[1])

    await loop_pool.delete_volume(fs)
    await loop_pool.delete_volume(block)
    await loop_pool.delete_volume(block)  # already gone: not an error

    assert mounted_at(fs.path) is None
    assert not Path(fs.path).exists()
    assert not any(image.exists() for image in images)
    assert len(devices) == 2
    assert not any(path.startswith(str(loop_pool.root)) for path in backing_files())
    assert await loop_pool.volume_names() == []


async def test_reattach_after_unmount_and_detach_keeps_the_data(loop_pool: LoopPool) -> None:
    info = await loop_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM)
    (Path(info.path) / "disk.img").write_bytes(b"precious" * 1000)
    unmount(info.path)
    for device in loop_devices_of(loop_pool.image_path("pvc-a")):
        detach(device)
    assert mounted_at(info.path) is None

    again = await loop_pool.ensure_attached(info)

    assert again == info
    assert mounted_at(info.path) == "ext4"
    assert (Path(info.path) / "disk.img").read_bytes() == b"precious" * 1000
    assert await loop_pool.ensure_attached(info) == info  # already attached: nothing to do
    assert len(loop_devices_of(loop_pool.image_path("pvc-a"))) == 1


async def test_reattach_of_a_block_volume_reports_its_new_device(loop_pool: LoopPool) -> None:
    info = await loop_pool.create_volume("pvc-b", 16 * MIB, VolumeMode.BLOCK)
    with open(info.path, "r+b") as device:
        device.seek(5 * MIB)
        device.write(b"block data")
    detach(info.path)
    squatter = loop_pool.root / "squatter.img"  # takes the old device number, as another user might
    squatter.write_bytes(b"\0" * MIB)
    attach_at(info.path, squatter)

    again = await loop_pool.ensure_attached(info)

    assert again.path.startswith("/dev/loop") and again.path != info.path
    assert again == info.at(again.path)
    with open(again.path, "rb") as device:
        device.seek(5 * MIB)
        assert device.read(10) == b"block data"


async def test_create_after_a_crash_reuses_the_volume(loop_pool: LoopPool) -> None:
    first = await loop_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM)
    (Path(first.path) / "marker").write_text("kept")

    second = await loop_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM)

    assert second == first
    assert (Path(second.path) / "marker").read_text() == "kept"
    assert len(loop_devices_of(loop_pool.image_path("pvc-a"))) == 1
    assert await loop_pool.volume_names() == ["pvc-a"]
    with pytest.raises(VolumeConflict, match=r"already exists with a [0-9]+-byte image, which cannot hold the "
                                             "67108864 bytes"):
        await loop_pool.create_volume("pvc-a", 64 * MIB, VolumeMode.FILESYSTEM)


async def test_a_half_made_image_is_started_again(loop_pool: LoopPool) -> None:
    partial = loop_pool.root / "images" / ".pvc-a.img.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage from a crash")

    info = await loop_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM)

    assert mounted_at(info.path) == "ext4"
    assert not partial.exists()
    assert await loop_pool.volume_names() == ["pvc-a"]


async def test_xfs_volumes(pool_root: Path) -> None:
    pool = LoopPool(pool_root, fs_type="xfs")
    small = await pool.create_volume("pvc-small", 64 * MIB, VolumeMode.FILESYSTEM)  # mkfs.xfs needs 300 MiB
    info = await pool.create_volume("pvc-x", 300 * MIB, VolumeMode.FILESYSTEM)
    other = await pool.create_volume("pvc-y", 16 * MIB, VolumeMode.FILESYSTEM, fs_type="ext4")

    assert (info.fs_type, mounted_at(info.path)) == ("xfs", "xfs")
    assert (small.fs_type, mounted_at(small.path)) == ("xfs", "xfs")
    assert pool.image_path("pvc-small").stat().st_size == 300 * MIB
    assert (other.fs_type, mounted_at(other.path)) == ("ext4", "ext4")
    for volume, capacity in ((small, 64 * MIB), (info, 300 * MIB), (other, 16 * MIB)):
        stats = os.statvfs(volume.path)
        assert stats.f_bavail * stats.f_frsize >= capacity
        await pool.delete_volume(volume)
    assert await pool.volume_names() == []


async def test_a_volume_whose_image_vanished_is_reported_lost(loop_pool: LoopPool) -> None:
    info = await loop_pool.create_volume("pvc-b", 16 * MIB, VolumeMode.BLOCK)
    await loop_pool.delete_volume(info)
    with pytest.raises(VolumeMissing, match="its data is lost"):
        await loop_pool.ensure_attached(info)
    with pytest.raises(VolumeConflict, match="not in the loop pool"):
        await loop_pool.ensure_attached(replace(info, backing="/elsewhere/pvc-b.img"))
