"""Large sparse disk images made in about a second, and a check of an imported disk that reads only its
data: for the memory-limit tests (`test_memory_limits`) and `bench/container_memory.py`.

A `Layout` is a virtual size and a few MiB of data at scattered offsets; everything else is zeros.
`make_qcow2` writes it as a qcow2 (a sparse raw file converted by qemu-img, which skips holes: the
qcow2 holds only the data's clusters). `make_gzip_raw` writes it as gzip-compressed raw without compressing gigabytes
of zeros: a gzip file may hold many members (RFC 1952), so one member of 64 MiB of zeros, compressed
once, is repeated, with the data in members of their own (`gzip -d` and the importer read it as one
stream). `make_gzip_raw_single` is the ordinary single-member kind (`gzip -1` over the whole raw
image: ~35 s for 4 GiB here), for the benchmark. `check_disk` walks the imported disk's data extents
(SEEK_DATA/SEEK_HOLE) and compares every byte it has with the layout; a hole reads as zeros.
"""

from __future__ import annotations

import os
import random
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
ZERO_MEMBER = 64 * MiB


@dataclass(frozen=True)
class Layout:
    size: int
    data: tuple[tuple[int, bytes], ...]  # (offset, bytes), MiB-aligned, ascending, not overlapping


def scattered(size: int, offsets_mib: tuple[int, ...], seed: int = 16) -> Layout:
    """`size` bytes with 1 MiB of random data at each MiB offset."""
    rng = random.Random(seed)
    return Layout(size, tuple((o * MiB, rng.randbytes(MiB)) for o in sorted(offsets_mib)))


def make_qcow2(layout: Layout, path: Path) -> Path:
    """The layout as qcow2: a sparse raw file converted (qemu-img skips its holes), then removed."""
    raw = make_raw(layout, path.with_suffix(".raw"))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()
    return path


def _runs(layout: Layout) -> Iterator[tuple[int, bytes | None]]:
    """(length, data) runs in order; None data is zeros."""
    position = 0
    for offset, data in layout.data:
        if offset > position:
            yield offset - position, None
        yield len(data), data
        position = offset + len(data)
    if layout.size > position:
        yield layout.size - position, None


def _member(data: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def make_gzip_raw(layout: Layout, path: Path) -> Path:
    """The layout as raw, gzip-compressed in many members (zeros compressed once and repeated)."""
    big, small = _member(bytes(ZERO_MEMBER)), _member(bytes(MiB))
    with path.open("wb") as out:
        for length, data in _runs(layout):
            if data is not None:
                out.write(_member(data))
                continue
            whole, rest = divmod(length, ZERO_MEMBER)
            for _ in range(whole):
                out.write(big)
            assert rest % MiB == 0, "layouts are MiB-aligned"
            for _ in range(rest // MiB):
                out.write(small)
    return path


def make_raw(layout: Layout, path: Path) -> Path:
    with path.open("wb") as out:
        out.truncate(layout.size)
        for offset, data in layout.data:
            out.seek(offset)
            out.write(data)
    return path


def make_gzip_raw_single(layout: Layout, path: Path) -> Path:
    """An ordinary gzip of the raw image (`gzip -1`): every zero goes through the compressor."""
    raw = make_raw(layout, path.with_suffix(""))
    with path.open("wb") as out:
        subprocess.run(["gzip", "-1", "-c", str(raw)], stdout=out, check=True)
    raw.unlink()
    return path


def expected(layout: Layout, offset: int, length: int) -> bytes:
    """The layout's bytes at [offset, offset + length)."""
    out = bytearray(length)
    for start, data in layout.data:
        lo, hi = max(start, offset), min(start + len(data), offset + length)
        if lo < hi:
            out[lo - offset:hi - offset] = data[lo - start:hi - start]
    return bytes(out)


def data_extents(path: Path) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data extent of a sparse file."""
    with path.open("rb") as f:
        fd, size, position = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while position < size:
            try:
                start = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after position
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end - start
            position = end


def check_disk(layout: Layout, disk: Path, max_read: int = 256 * MiB) -> int:
    """Assert that `disk` holds `layout` (at least its size; every data extent matching; data past the
    layout zero); the bytes of data it read."""
    assert disk.stat().st_size >= layout.size, f"{disk} is {disk.stat().st_size} bytes, want {layout.size}"
    read = 0
    with disk.open("rb") as f:
        for start, length in data_extents(disk):
            read += length
            assert read <= max_read, f"{disk} has more than {max_read} bytes of data: it was not written sparse"
            f.seek(start)
            for chunk_start in range(start, start + length, 8 * MiB):
                chunk = f.read(min(8 * MiB, start + length - chunk_start))
                want = expected(layout, chunk_start, len(chunk))
                assert chunk == want, f"{disk}: bytes at {chunk_start} differ from the image's"
    present = sum(len(d) for _, d in layout.data)
    assert read >= present, f"{disk} holds {read} bytes of data, the image {present}"
    return read
