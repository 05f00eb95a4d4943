"""qcow2 images for the streaming reader's tests: real `qemu-img`/`qemu-io` output in many shapes, plus
surgical edits that move or break tables the way a resized, hand-made or hostile image would.

`convert_with_stream` runs the streaming reader on a file the way the transfer thread does (front to
back, no seeking) and `qemu_raw` gives the reference bytes from `qemu-img convert -O raw`.
"""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

from importer.formats import PEEK_SIZE
from importer.qcow2stream import DiskOutput, Qcow2Stream, read_layout
from importer.qcow2stream.spool import MEMORY_LIMIT

MiB = 1 << 20
L2_OFFSET_MASK = 0x00FFFFFFFFFFFE00


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def qemu_io(image: Path, *commands: str) -> None:
    argv: list[str] = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        argv += ["-c", command]
    subprocess.run([*argv, str(image)], check=True, capture_output=True)


def patterned(length: int) -> bytes:
    """Compressible but not trivially so: 16 symbols drawn at random."""
    table = bytes(b"abcdefghijklmnop"[i % 16] for i in range(256))
    return os.urandom(length).translate(table)


def write_raw(path: Path, size: int, regions: list[tuple[int, int]]) -> None:
    """A sparse raw disk with pattern data at each (offset, length)."""
    with path.open("wb") as f:
        f.truncate(size)
        for offset, length in regions:
            f.seek(offset)
            f.write(patterned(length))


def qemu_raw(image: Path, out: Path) -> bytes:
    qemu_img("convert", "-f", "qcow2", "-O", "raw", image, out)
    return out.read_bytes()


class _Unseekable:
    """A file read strictly front to back, as a network stream is."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb", buffering=0)

    def read(self, size: int = -1, /) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


def convert_with_stream(image: Path, out: Path, *, spool_dir: Path | None = None,
                        spool_memory: int = MEMORY_LIMIT) -> Qcow2Stream:
    header = image.read_bytes()[:PEEK_SIZE]
    source = _Unseekable(image)
    stream = Qcow2Stream(source, read_layout(header))
    try:
        stream.prepare()
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            output = DiskOutput(fd, block_device=False, sparse=True, virtual_size=stream.layout.virtual_size,
                                what=str(out))
            stream.run(output, spool_dir, spool_memory=spool_memory)
        finally:
            os.close(fd)
    finally:
        source.close()
    return stream


def header_fields(image: Path) -> tuple[int, int, int]:
    """(cluster_bits, l1_offset, l1_size)."""
    data = image.read_bytes()[:64]
    (cluster_bits,) = struct.unpack_from(">I", data, 20)
    l1_size, l1_offset = struct.unpack_from(">IQ", data, 36)
    return cluster_bits, l1_offset, l1_size


def l1_entries(image: Path) -> list[int]:
    _, l1_offset, l1_size = header_fields(image)
    with image.open("rb") as f:
        f.seek(l1_offset)
        return list(struct.unpack(f">{l1_size}Q", f.read(8 * l1_size)))


def move_l2_tables_to_end(image: Path) -> None:
    """Relocate every L2 table after all the data (refcounts go stale, which conversion ignores)."""
    cluster_bits, l1_offset, _ = header_fields(image)
    cluster = 1 << cluster_bits
    entries = l1_entries(image)
    with image.open("r+b") as f:
        end = -(-f.seek(0, os.SEEK_END) // cluster) * cluster
        for index, entry in enumerate(entries):
            old = entry & L2_OFFSET_MASK
            if not old:
                continue
            f.seek(old)
            table = f.read(cluster)
            f.seek(old)
            f.write(bytes(cluster))
            f.seek(end)
            f.write(table)
            f.seek(l1_offset + 8 * index)
            f.write(struct.pack(">Q", (entry & ~L2_OFFSET_MASK) | end))
            end += cluster


def poke_l2_entry(image: Path, l1_index: int, l2_index: int, value: int) -> None:
    table = l1_entries(image)[l1_index] & L2_OFFSET_MASK
    with image.open("r+b") as f:
        f.seek(table + 8 * l2_index)
        f.write(struct.pack(">Q", value))


def read_l2_entry(image: Path, l1_index: int, l2_index: int) -> int:
    table = l1_entries(image)[l1_index] & L2_OFFSET_MASK
    with image.open("rb") as f:
        f.seek(table + 8 * l2_index)
        (value,) = struct.unpack(">Q", f.read(8))
    return value
