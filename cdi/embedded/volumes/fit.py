"""How big a Filesystem volume's image must be so that its files get the whole capacity: pure arithmetic.

A CSI driver that provisions a claim of capacity C hands out a filesystem whose space available to
files is at least C; the filesystem's own metadata (ext4 inode tables, journal and the kernel's
delayed-allocation reserve; xfs log, per-AG btree reserves and reserve pool) comes on top. Upstream
CDI's sizing relies on that: the controller inflates a DataVolume's request by the filesystem
overhead, and the importer sizes `disk.img` to `min(statfs free, PVC request) / (1 + overhead)`, which
equals the DataVolume's request only if the volume really offers the PVC's request to files.

`first_image_size` is a deliberately generous estimate of the image for capacity C (fitted to
mkfs.ext4 1.47 with `-m 0` and mkfs.xfs 6.1 defaults, measured on sparse images); the measurement is
what decides: `cdi.embedded.volumes.growth` mounts the filesystem, measures the room its files have
(`room`), and asks `next_image_size` how far to grow the image when the room falls short, as it may on
other mkfs versions or after an online resize (which keeps the old journal and geometry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MIB: Final = 1024 * 1024
# The smallest image mkfs makes each filesystem on (mkfs.xfs refuses anything under 300 MiB).
MIN_IMAGE_BYTES: Final = {"ext4": 1 * MIB, "xfs": 300 * MIB}
# Give up growing after this many measured steps: the filesystem does not grow the way it should.
MAX_GROWTH_STEPS: Final = 8


@dataclass(frozen=True)
class OverheadModel:
    """Filesystem overhead as `per_mille` of the image plus `fixed_mib`, an upper bound on the
    measured overhead for images up to `below_mib` (None: any size)."""

    per_mille: int
    fixed_mib: int
    below_mib: int | None = None

    def image_for(self, capacity: int) -> int:
        """The image whose overhead under this model leaves `capacity` bytes: S = (C + b) / (1 - a)."""
        return -(-(capacity + self.fixed_mib * MIB) * 1000 // (1000 - self.per_mille))


# mke2fs makes images under 512 MiB with 1 KiB blocks and an inode per 4 KiB (its "small" type):
# inode tables alone are 6.25 %; above, 4 KiB blocks, an inode per 16 KiB and a journal up to 1 GiB.
# xfs: a 64 MiB log on small filesystems, then about 0.7 % in per-AG reserves.
OVERHEAD_MODELS: Final[dict[str, tuple[OverheadModel, ...]]] = {
    "ext4": (OverheadModel(per_mille=90, fixed_mib=6, below_mib=512), OverheadModel(per_mille=28, fixed_mib=64)),
    "xfs": (OverheadModel(per_mille=8, fixed_mib=100),),
}


def whole_mib(size: int) -> int:
    return -(-size // MIB) * MIB


def first_image_size(fs_type: str, capacity: int) -> int:
    """The image to make a `fs_type` filesystem on for a volume of `capacity` bytes (whole MiB)."""
    for model in OVERHEAD_MODELS[fs_type]:
        image = whole_mib(model.image_for(capacity))
        if model.below_mib is None or image < model.below_mib * MIB:
            return max(image, MIN_IMAGE_BYTES[fs_type])
    raise AssertionError(f"no overhead model covers {fs_type} at {capacity} bytes")  # the last is unbounded


def room(available: int, file_bytes: int) -> int:
    """The space files have on a filesystem: what statfs says is available to them plus what the files
    already there occupy (so a volume holding data measures the same as when it was empty)."""
    return available + file_bytes


def next_image_size(image_size: int, capacity: int, measured_room: int) -> int | None:
    """The size to grow the image to when the filesystem's room falls short of `capacity`; None when it
    does not. The step covers the shortfall plus an eighth for the metadata that grows with the
    filesystem (ext4's inode tables are 6.25 % of a small filesystem), and at least one MiB."""
    shortfall = capacity - measured_room
    if shortfall <= 0:
        return None
    return whole_mib(image_size + shortfall + shortfall // 8 + MIB)
