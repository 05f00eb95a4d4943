"""Header fields the streaming reader does not handle are declined (to scratch and qemu-img), not refused."""

from __future__ import annotations

import struct

import pytest

from importer.qcow2stream import Decline, read_layout


def header(*, version: int = 3, cluster_bits: int = 16, size: int = 1 << 30, l1_size: int = 2,
           l1_offset: int = 0x30000, incompatible: int = 0, compression: int = 0, length: int = 112) -> bytes:
    data = bytearray(512)
    data[:4] = b"QFI\xfb"
    struct.pack_into(">IQIIQIIQQI", data, 4, version, 0, 0, cluster_bits, size, 0, l1_size, l1_offset,
                     0x10000, 1)
    struct.pack_into(">Q", data, 72, incompatible)
    struct.pack_into(">I", data, 100, length)
    data[104] = compression
    return bytes(data)


def test_plain_v3_header() -> None:
    layout = read_layout(header())
    assert (layout.cluster_size, layout.virtual_size, layout.l1_needed, layout.compression) == \
        (65536, 1 << 30, 2, "deflate")


def test_zstd_and_extended_l2() -> None:
    layout = read_layout(header(incompatible=1 << 3 | 1 << 4, compression=1, l1_size=4))
    assert layout.compression == "zstd"
    assert layout.extended_l2 and layout.l2_entries == 4096


@pytest.mark.parametrize(("fields", "reason"), [
    ({"cluster_bits": 22}, "cluster_bits 22"),
    ({"incompatible": 1 << 5}, "incompatible qcow2 features"),
    ({"compression": 1}, "compression type 1"),
    ({"compression": 7, "incompatible": 1 << 3}, "compression type 7"),
    ({"l1_size": 1}, "needs 2"),
    ({"l1_size": 0x7FFFFFFF}, "more than qemu allows"),
    ({"l1_offset": 0x30200}, "not a valid cluster offset"),
    ({"length": 100}, "header length 100"),
])
def test_unusual_headers_are_declined(fields: dict[str, int], reason: str) -> None:
    with pytest.raises(Decline, match=reason):
        read_layout(header(**fields))
