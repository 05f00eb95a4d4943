"""`importer.qcow2stream.tables.L2Table`: which entries of one L2 table it walks, in host order.

The table finds candidate entries in C (entries with any bit set) before it decodes them in Python; these
tables mix every kind of entry a standard and an extended L2 table can hold, including the ones that
have bits set and still hold no data (the zero flag alone, a zero-flagged cluster with a host offset),
and an extended entry whose first word is zero but whose bitmap marks subclusters, which must not be
skipped as "all zero bits" from its first word alone.
"""

from __future__ import annotations

import struct

import pytest

from importer.errors import InvalidImage
from importer.qcow2stream.layout import Layout
from importer.qcow2stream.tables import COMPRESSED, STANDARD, L2Table

CLUSTER_BITS = 16
CS = 1 << CLUSTER_BITS


def _layout(extended: bool, virtual_size: int = 1 << 40) -> Layout:
    return Layout(3, CLUSTER_BITS, virtual_size, CS, 1 << 12, 2 * CS, 1, extended, "zlib")


def _table(entries: dict[int, int | tuple[int, int]], layout: Layout) -> bytes:
    step = 2 if layout.extended_l2 else 1
    words = [0] * (layout.l2_entries * step)
    for index, value in entries.items():
        if isinstance(value, tuple):
            words[index * 2], words[index * 2 + 1] = value
        else:
            words[index * step] = value
    return struct.pack(f">{len(words)}Q", *words)


def _walk(table: L2Table) -> list[tuple[int, int, int, int]]:
    found = []
    while table.peek_start() is not None:
        extent = table.take()
        if extent is not None:
            found.append((extent.start, extent.guest, extent.kind, extent.end - extent.start))
    return found


def test_standard_table_walks_allocated_entries_in_host_order_and_skips_zero_ones() -> None:
    layout = _layout(extended=False)
    compressed = (1 << 62) | (3 << layout.csize_shift) | (40 * CS + 512)  # 4 sectors at host 40 clusters + 512
    table = L2Table(_table({
        0: 9 * CS,  # data at host cluster 9
        5: 1,  # "reads as zeros", no host cluster: nothing to read
        6: (7 * CS) | 1,  # zero flag with a preallocated host cluster: still reads as zeros
        100: 3 * CS,
        8191: 20 * CS,  # the last entry of the table
        4000: compressed,
    }, layout), l1_index=2, layout=layout)
    base = 2 * layout.guest_per_l2
    assert _walk(table) == [
        (3 * CS, base + 100 * CS, STANDARD, CS),
        (9 * CS, base, STANDARD, CS),
        (20 * CS, base + 8191 * CS, STANDARD, CS),
        (40 * CS + 512, base + 4000 * CS, COMPRESSED, 4 * 512),
    ]


def test_standard_table_ignores_entries_past_the_virtual_size() -> None:
    layout = _layout(extended=False, virtual_size=10 * CS)
    table = L2Table(_table({2: 5 * CS, 10: 6 * CS, 500: 7 * CS}, layout), l1_index=0, layout=layout)
    assert _walk(table) == [(5 * CS, 2 * CS, STANDARD, CS)]


def test_extended_table_keeps_an_entry_whose_bitmap_alone_is_set() -> None:
    layout = _layout(extended=True)
    sub = layout.subcluster_size
    table = L2Table(_table({
        1: (4 * CS, 0b1),  # first subcluster allocated
        2: (0, 0xFFFFFFFF << 32),  # every subcluster reads as zeros: bits set, no data
        3: (6 * CS, 0b111),
        4: (0, 0),
    }, layout), l1_index=0, layout=layout)
    assert _walk(table) == [(4 * CS, CS, STANDARD, sub), (6 * CS, 3 * CS, STANDARD, 3 * sub)]


def test_extended_entry_with_bitmap_but_no_host_offset_is_corruption() -> None:
    layout = _layout(extended=True)
    table = L2Table(_table({7: (0, 0b1)}, layout), l1_index=0, layout=layout)
    with pytest.raises(InvalidImage, match="allocated in a cluster with no host offset"):
        _walk(table)
