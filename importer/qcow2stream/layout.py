"""What the qcow2 header says about where things are, and whether a single pass can handle it.

`read_layout` turns the first bytes of a qcow2 image into a `Layout` (cluster size, virtual size,
where the L1 table lives, extended L2 entries, compression type). It runs after
`importer.qcow2header` has refused the unsafe images (backing file, external data file, encryption,
corrupt bit, too large), so it only decides whether the streaming reader can take the image. Anything
outside what qemu itself writes (odd cluster sizes, unknown feature bits, an L1 table too small for the
disk or far away from the start) raises `Decline` with the reason: such images are not refused, they
go to scratch space where `qemu-img` is the judge. Pure; used by `importer.qcow2stream.engine`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# qemu's own bounds (block/qcow2.h): cluster_bits 9..21, L1 at most 32 MiB.
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_L1_BYTES = 32 << 20
# Incompatible feature bits (docs/interop/qcow2.txt): 0 dirty, 1 corrupt, 2 external data file,
# 3 compression type, 4 extended L2 entries. Corrupt and data file are refused before we get here.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTENDED_L2 = 1 << 4
_UNDERSTOOD = INCOMPAT_DIRTY | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2
COMPRESSION_DEFLATE = "deflate"
COMPRESSION_ZSTD = "zstd"
_COMPRESSION_TYPES = {0: COMPRESSION_DEFLATE, 1: COMPRESSION_ZSTD}
SUBCLUSTERS = 32


class Decline(Exception):
    """This image cannot be converted in one pass within our bounds; the reason says why. The caller
    falls back to scratch space and `qemu-img`, which reads the image with random access."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    version: int
    cluster_bits: int
    virtual_size: int
    l1_offset: int
    l1_entries: int
    refcount_table_offset: int
    refcount_table_clusters: int
    extended_l2: bool
    compression: str

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def l2_entry_size(self) -> int:
        return 16 if self.extended_l2 else 8

    @property
    def l2_entries(self) -> int:
        """Guest clusters one L2 table maps."""
        return self.cluster_size // self.l2_entry_size

    @property
    def guest_per_l2(self) -> int:
        return self.l2_entries * self.cluster_size

    @property
    def subcluster_size(self) -> int:
        return self.cluster_size // SUBCLUSTERS

    @property
    def l1_needed(self) -> int:
        """L1 entries the virtual size needs; entries beyond are ignored, as qemu does."""
        return -(-self.virtual_size // self.guest_per_l2)

    @property
    def l1_end(self) -> int:
        return self.l1_offset + self.l1_entries * 8

    @property
    def csize_shift(self) -> int:
        """Where the sector count starts in a compressed cluster descriptor."""
        return 62 - (self.cluster_bits - 8)

    def cluster_of(self, offset: int) -> int:
        return offset >> self.cluster_bits


def read_layout(header: bytes) -> Layout:
    """Parse the header fields the streaming reader needs, declining what it does not handle."""
    if len(header) < 104:
        raise Decline("the qcow2 header is shorter than the reader needs")
    version, = struct.unpack_from(">I", header, 4)
    cluster_bits, virtual_size = struct.unpack_from(">IQ", header, 20)
    l1_entries, l1_offset, rt_offset, rt_clusters = struct.unpack_from(">IQQI", header, 36)
    incompatible, header_length, compression_type = 0, 72, 0
    if version >= 3:
        incompatible, = struct.unpack_from(">Q", header, 72)
        header_length, = struct.unpack_from(">I", header, 100)
        if header_length < 104:
            raise Decline(f"the qcow2 v3 header length {header_length} is below the minimum of 104")
        if header_length > 104 and len(header) > 104:
            compression_type = header[104]
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise Decline(f"cluster_bits {cluster_bits} is outside qemu's range {MIN_CLUSTER_BITS}..{MAX_CLUSTER_BITS}")
    if unknown := incompatible & ~_UNDERSTOOD:
        raise Decline(f"the image uses incompatible qcow2 features the streaming reader does not know "
                      f"(bits {unknown:#x})")
    compression = _COMPRESSION_TYPES.get(compression_type)
    if compression is None or bool(compression_type) != bool(incompatible & INCOMPAT_COMPRESSION):
        raise Decline(f"qcow2 compression type {compression_type} is unknown or does not match the "
                      f"compression feature bit")
    layout = Layout(version, cluster_bits, virtual_size, l1_offset, l1_entries, rt_offset, rt_clusters,
                    bool(incompatible & INCOMPAT_EXTENDED_L2), compression)
    _check_l1(layout)
    return layout


def _check_l1(layout: Layout) -> None:
    if layout.l1_entries * 8 > MAX_L1_BYTES:
        raise Decline(f"the L1 table has {layout.l1_entries} entries, more than qemu allows")
    if layout.l1_entries < layout.l1_needed:
        raise Decline(f"the L1 table has {layout.l1_entries} entries but the virtual size needs "
                      f"{layout.l1_needed}")
    if layout.l1_offset % layout.cluster_size or (layout.l1_needed and layout.l1_offset < layout.cluster_size):
        raise Decline(f"the L1 table offset {layout.l1_offset:#x} is not a valid cluster offset")
