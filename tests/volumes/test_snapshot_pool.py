"""Snapshots and clones in the pools: reflink on the xfs pool filesystem (O(1): no time, no space),
sparse copies elsewhere (holes kept), a frozen filesystem around the copy, restart, crash debris."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.directory import DirectoryPool
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.pool import VolumeInfo
from cdi.embedded.volumes.selection import open_pool
from cdi.toolrun import Completed, run_tool
from tests.volumes.support import MIB, release_everything

GIB = 1024 * MIB


def sha256(path: Path, ranges: Sequence[tuple[int, int]] = ((0, 1 << 62),)) -> str:
    """The sha256 of the (offset, length) ranges of a file or device, in order."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for offset, length in ranges:
            source.seek(offset)
            remaining = length
            while remaining > 0 and (chunk := source.read(min(8 * MIB, remaining))):
                digest.update(chunk)
                remaining -= len(chunk)
    return digest.hexdigest()


def write_at(path: str, offsets: Sequence[int], size: int) -> None:
    with open(path, "r+b") as device:
        for offset in offsets:
            device.seek(offset)
            device.write(os.urandom(size))
        os.fsync(device.fileno())


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


async def reflink_pool(root: Path) -> LoopPool:
    pool = await open_pool(root)
    assert isinstance(pool, LoopPool) and pool.supports_reflink
    return pool


async def test_a_64_gib_block_volume_is_snapshotted_and_cloned_in_o1_on_the_xfs_pool(pool_root: Path) -> None:
    pool = await reflink_pool(pool_root)
    source = await pool.create_volume("pvc-src", 64 * GIB, VolumeMode.BLOCK)
    offsets = [i * 8 * GIB for i in range(8)]
    write_at(source.path, offsets, 32 * MIB)  # 256 MiB of data spread over the volume
    data = [(offset, 40 * MIB) for offset in offsets]  # each 32 MiB of data and some hole after it
    before = free_bytes(pool.data)

    started = time.monotonic()
    snapshot = await pool.snapshot_volume(source, "snap-1")
    clone = await pool.create_volume_from("pvc-clone", 64 * GIB, source)
    restored = await pool.create_volume_from("pvc-restored", 64 * GIB, snapshot)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"snapshot + clone + restore of 64 GiB took {elapsed:.2f} s"
    assert snapshot.method == "reflink" and snapshot.size_bytes == 64 * GIB
    assert before - free_bytes(pool.data) < 16 * MIB  # three copies of 256 MiB of data cost (almost) nothing
    extents = (await run_tool(["filefrag", "-v", clone.backing])).check().stdout
    assert "shared" in extents
    expected = sha256(Path(source.path), data)
    assert sha256(Path(clone.path), data) == expected == sha256(Path(restored.path), data)
    write_at(source.path, [0], MIB)  # the copies do not follow later writes
    assert sha256(Path(restored.path), data) == expected != sha256(Path(source.path), data)


async def test_a_mounted_filesystem_is_frozen_around_the_copy_and_a_clone_grows(pool_root: Path) -> None:
    calls: list[list[str]] = []

    async def recording(argv: Sequence[str]) -> Completed:
        calls.append(list(argv))
        return await run_tool(argv)

    pool = LoopPool(pool_root, runner=recording)
    source = await pool.create_volume("pvc-fs", 64 * MIB, VolumeMode.FILESYSTEM, fs_type="xfs")
    (Path(source.path) / "disk.img").write_bytes(os.urandom(8 * MIB))
    expected = sha256(Path(source.path) / "disk.img")
    calls.clear()

    snapshot = await pool.snapshot_volume(source, "snap-fs")
    assert [argv[:2] for argv in calls if argv[0] == "fsfreeze"] == [["fsfreeze", "--freeze"],
                                                                   ["fsfreeze", "--unfreeze"]]
    (Path(source.path) / "disk.img").write_bytes(b"overwritten")
    restored = await pool.create_volume_from("pvc-restored", 512 * MIB, snapshot)

    assert restored.fs_type == "xfs" and restored.size_bytes == 512 * MIB
    assert sha256(Path(restored.path) / "disk.img") == expected
    stats = os.statvfs(restored.path)
    assert stats.f_bavail * stats.f_frsize + 8 * MIB >= 512 * MIB  # grown like an expansion
    again = await pool.snapshot_volume(source, "snap-fs")  # idempotent: the snapshot already taken
    assert again == snapshot


async def test_without_reflink_copies_are_sparse(pool_root: Path) -> None:
    pool = LoopPool(pool_root)  # tmp_path is ext4 here: no reflink
    assert not pool.supports_reflink
    source = await pool.create_volume("pvc-src", 1 * GIB, VolumeMode.BLOCK)
    write_at(source.path, [0, 512 * MIB], 4 * MIB)

    snapshot = await pool.snapshot_volume(source, "snap-1")
    clone = await pool.create_volume_from("pvc-clone", 2 * GIB, snapshot)

    assert snapshot.method == "sparse"
    assert Path(snapshot.backing).stat().st_blocks * 512 <= 9 * MIB  # 8 MiB of data; the holes stayed holes
    assert Path(clone.backing).stat().st_size == 2 * GIB  # grown to the size asked for
    data = [(0, 8 * MIB), (512 * MIB - MIB, 8 * MIB), (GIB - MIB, MIB)]
    assert sha256(Path(clone.path), data) == sha256(Path(source.path), data)
    assert sha256(Path(clone.path), [(GIB, MIB)]) == hashlib.sha256(bytes(MIB)).hexdigest()  # the grown part


async def test_the_xfs_pool_and_its_volumes_come_back_after_a_reboot(pool_root: Path) -> None:
    pool = await reflink_pool(pool_root)
    source = await pool.create_volume("pvc-src", 64 * MIB, VolumeMode.FILESYSTEM)
    (Path(source.path) / "disk.img").write_bytes(b"kept across reboots")
    await pool.snapshot_volume(source, "snap-1")
    assert release_everything(pool_root)  # what a reboot does to mounts and loop devices

    again = await reflink_pool(pool_root)
    attached = await again.ensure_attached(source)

    assert (Path(attached.path) / "disk.img").read_bytes() == b"kept across reboots"
    assert (await again.get_snapshot("snap-1")) is not None
    assert sorted(path.name for path in pool_root.iterdir()) == ["mounts", "reflink", "reflink-pool.img"]


async def test_crash_debris_is_replaced_and_snapshots_are_deleted(pool_root: Path) -> None:
    pool = await reflink_pool(pool_root)
    source = await pool.create_volume("pvc-src", 16 * MIB, VolumeMode.BLOCK)
    snapshots = pool.data / "snapshots"
    snapshots.mkdir()
    (snapshots / ".snap-1.partial").write_bytes(b"half a copy")
    (snapshots / "snap-1.json").write_text("{}")  # recorded, but the copy never got into place
    assert await pool.get_snapshot("snap-1") is None

    taken = await pool.snapshot_volume(source, "snap-1")
    assert Path(taken.backing).stat().st_size == 16 * MIB
    await pool.delete_snapshot("snap-1")
    await pool.delete_snapshot("snap-1")  # already gone: fine
    assert list(snapshots.iterdir()) == []
    with pytest.raises(VolumeError) as raised:
        await pool.get_snapshot("../images/pvc-src")
    assert raised.value.reason == "SnapshotMissing"


async def test_a_directory_volume_in_use_is_not_snapshotted(directory_pool: DirectoryPool) -> None:
    source = await directory_pool.create_volume("pvc-dir", 16 * MIB, VolumeMode.FILESYSTEM)
    (Path(source.path) / "disk.img").write_bytes(b"directory data")
    with pytest.raises(VolumeError) as raised:
        await directory_pool.snapshot_volume(source, "snap-1", in_use=True)
    assert (raised.value.reason, raised.value.retryable) == ("SnapshotNotConsistent", True)
    with pytest.raises(VolumeError) as raised:
        await directory_pool.create_volume_from("pvc-busy", 16 * MIB, source, in_use=True)
    assert raised.value.reason == "SnapshotNotConsistent"

    snapshot = await directory_pool.snapshot_volume(source, "snap-1")
    clone = await directory_pool.create_volume_from("pvc-clone", 16 * MIB, snapshot)
    copy = await directory_pool.create_volume_from("pvc-copy", 16 * MIB, source)
    assert (Path(clone.path) / "disk.img").read_bytes() == b"directory data"
    assert (Path(copy.path) / "disk.img").read_bytes() == b"directory data"
    assert isinstance(copy, VolumeInfo) and sorted(await directory_pool.volume_names()) == [
        "pvc-clone", "pvc-copy", "pvc-dir"]


async def test_a_volume_left_frozen_by_a_crash_is_thawed_when_attached_again(loop_pool: LoopPool) -> None:
    volume = await loop_pool.create_volume("pvc-frozen", 16 * MIB, VolumeMode.FILESYSTEM)
    (await run_tool(["fsfreeze", "--freeze", volume.path])).check()  # as if cdi died mid-snapshot
    try:
        attached = await loop_pool.ensure_attached(volume)
        assert (await run_tool(["fsfreeze", "--unfreeze", attached.path])).returncode == 1  # no longer frozen
        (Path(attached.path) / "disk.img").write_bytes(b"writable again")
        await loop_pool.ensure_attached(volume)  # not frozen: nothing to thaw, no error
    finally:
        await run_tool(["fsfreeze", "--unfreeze", volume.path])
