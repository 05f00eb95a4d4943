"""The image-size arithmetic of Filesystem volumes (pure): the first estimate and the measured growth step."""

from __future__ import annotations

import pytest

from cdi.embedded.volumes.fit import first_image_size, next_image_size, room
from tests.volumes.support import MIB


@pytest.mark.parametrize(("fs_type", "capacity_mib", "image_mib"), [
    ("ext4", 1, 8),  # (1 + 6) / 0.91, whole MiB
    ("ext4", 68, 82),
    ("ext4", 136, 157),
    ("ext4", 460, 540),  # past 512 MiB mke2fs switches to 4 KiB blocks: the second model
    ("ext4", 1086, 1184),
    ("ext4", 108544, 111737),
    ("xfs", 68, 300),  # mkfs.xfs makes nothing smaller
    ("xfs", 1086, 1196),
    ("xfs", 108544, 109521),
])
def test_first_image_size(fs_type: str, capacity_mib: int, image_mib: int) -> None:
    assert first_image_size(fs_type, capacity_mib * MIB) == image_mib * MIB


def test_growth_covers_the_shortfall_and_the_metadata_that_grows_with_it() -> None:
    assert next_image_size(100 * MIB, 90 * MIB, 90 * MIB) is None
    assert next_image_size(100 * MIB, 90 * MIB, 91 * MIB) is None
    assert next_image_size(100 * MIB, 90 * MIB, 82 * MIB) == 110 * MIB  # 8 MiB short: + 8 + 1 + 1
    assert next_image_size(100 * MIB, 90 * MIB, 90 * MIB - 1) == 102 * MIB  # one byte short: whole MiB


def test_room_counts_what_the_files_already_hold() -> None:
    assert room(available=10 * MIB, file_bytes=54 * MIB) == 64 * MIB
