"""`DirectoryPool` (volumes as plain directories) and the start-up choice between it and `LoopPool`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.directory import DirectoryPool
from cdi.embedded.volumes.errors import BlockVolumesUnsupported, VolumeMissing
from cdi.embedded.volumes.loop import LoopPool
from cdi.embedded.volumes.selection import open_pool
from cdi.toolrun import Completed
from tests.volumes.support import MIB


async def test_a_filesystem_volume_is_a_directory(directory_pool: DirectoryPool) -> None:
    info = await directory_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM)

    assert info.path == info.backing == str(directory_pool.root / "volumes" / "pvc-a")
    (Path(info.path) / "disk.img").write_bytes(b"x" * 100)
    assert await directory_pool.create_volume("pvc-a", 16 * MIB, VolumeMode.FILESYSTEM) == info
    assert (Path(info.path) / "disk.img").exists()
    assert await directory_pool.ensure_attached(info) == info
    assert directory_pool.owns(info)
    assert await directory_pool.volume_names() == ["pvc-a"]

    await directory_pool.delete_volume(info)
    await directory_pool.delete_volume(info)
    assert not Path(info.path).exists()
    with pytest.raises(VolumeMissing):
        await directory_pool.ensure_attached(info)


async def test_block_volumes_are_refused_with_a_reason(directory_pool: DirectoryPool) -> None:
    with pytest.raises(BlockVolumesUnsupported, match="cannot provide volumeMode Block") as raised:
        await directory_pool.create_volume("pvc-b", 16 * MIB, VolumeMode.BLOCK)
    assert raised.value.reason == "BlockVolumesUnsupported"
    assert not raised.value.retryable
    assert await directory_pool.volume_names() == []


async def test_loop_devices_are_chosen_when_they_work(pool_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cdi.embedded.volumes.selection"):
        pool = await open_pool(pool_root)
    assert isinstance(pool, LoopPool)
    assert "loop devices work" in caplog.text
    # the probes clean up after themselves; the pool directory (ext4 here) cannot reflink, so images go on an xfs
    assert sorted(path.name for path in pool_root.iterdir()) == ["reflink", "reflink-pool.img"]
    assert pool.supports_reflink and pool.data == pool_root / "reflink"


async def test_directories_are_chosen_when_loop_devices_fail(pool_root: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    async def no_loop_devices(argv: Sequence[str]) -> Completed:
        return Completed(tuple(argv), 1, "", "losetup: cannot find an unused loop device\n")

    with caplog.at_level(logging.INFO, logger="cdi.embedded.volumes.selection"):
        pool = await open_pool(pool_root, runner=no_loop_devices)
    assert isinstance(pool, DirectoryPool)
    assert "cannot find an unused loop device" in caplog.text
    assert "Block volumes are unavailable" in caplog.text
