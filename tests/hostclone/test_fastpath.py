"""The clone's fast data path: the cloner's reused window buffer (`extents.Windows`) against the copying
`extents`, the target's O_DIRECT writes from page-aligned slots (`ClonedDisk.write_aligned`), extents
that start and end off the alignment and span several receive slots (`clonestream.SLOT`), and a
connection cut in the middle of a slot. Results are checked as a user would: the bytes, and where the
target's data is (SEEK_DATA/SEEK_HOLE), compared with what the source holds."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
from decimal import Decimal
from pathlib import Path

import pytest

from cdi.contracts import clone_protocol as cp
from importer.cloner.client import CloneClient, client_context
from importer.cloner.extents import Windows, data_ranges, extents
from importer.target import Target
from importer.uploadserver.clonedisk import DIRECT_ALIGN, ClonedDisk, Sizing
from importer.uploadserver.clonestream import SLOT
from tests.hostclone.conftest import StartTarget
from tests.hostclone.support import (
    CountingRelay,
    MiB,
    cloner_env,
    loop_device,
    pattern,
    sha256_of,
    write_layout,
)
from tests.hostclone.test_datapath import data_cuts, run_clone
from tests.support.tls import ClientCert, TestPKI

BLOCK = 4096
# One big extent spanning several windows and many slots, with an unaligned end; an extent ending off
# the block size; data, a zero-filled stretch and data again inside one window.
FAST_LAYOUT: tuple[tuple[int, int, int | None], ...] = (
    (1 * MiB, 19 * MiB + 333, 0x51), (24 * MiB + 8192, 3 * MiB, 0x52), (27 * MiB + 8192, 1 * MiB, None),
    (28 * MiB + 8192, 2 * MiB + 4000, 0x53))
FAST_SIZE = 36 * MiB


def block_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges widened to whole blocks and merged: where a filesystem may hold them."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        start, end = start // BLOCK * BLOCK, -(-end // BLOCK) * BLOCK
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def stored_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(data_ranges(fd, size, 0, seek=True))
    finally:
        os.close(fd)


def sent_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(extent.offset, extent.end) for extent in extents(fd, size)]
    finally:
        os.close(fd)


def test_reused_window_views_are_the_extents_from_every_boundary(tmp_path: Path) -> None:
    source = tmp_path / "disk.img"
    write_layout(source, FAST_SIZE, FAST_LAYOUT)
    fd = os.open(source, os.O_RDONLY)
    try:
        expected = [(extent.offset, extent.data) for extent in extents(fd, FAST_SIZE)]
        windows = Windows(fd, FAST_SIZE)
        assert [(offset, bytes(view)) for offset, view in windows.spans()] == expected
        for index, (boundary, _data) in enumerate(expected):  # resuming at any extent boundary
            assert [(offset, bytes(view)) for offset, view in windows.spans(boundary)] == expected[index:]
    finally:
        os.close(fd)
    # Extents never cross a multiple of EXTENT_ALIGN; the zero-filled MiB is not sent.
    assert all(offset // cp.EXTENT_ALIGN == (offset + len(data) - 1) // cp.EXTENT_ALIGN for offset, data in expected)
    assert sum(len(data) for _, data in expected) <= 19 * MiB + 3 * MiB + 2 * MiB + 3 * cp.ZERO_BLOCK + 2 * MiB
    assert not any(offset <= 27 * MiB + 8192 + cp.ZERO_BLOCK and offset + len(data) >= 28 * MiB
                   for offset, data in expected)


def test_target_writes_aligned_slots_around_the_page_cache_and_the_rest_through_it(tmp_path: Path) -> None:
    data_path = tmp_path / "data"
    data_path.mkdir()
    size = 8 * MiB
    disk = ClonedDisk(Target(data_path, False, 1 << 30), size, Sizing(None, Decimal(0), False))
    assert disk.direct  # ext4 (the suite's temporary directory) takes O_DIRECT
    slot = mmap.mmap(-1, 2 * MiB)
    expected = bytearray(size)
    pieces = [(0, 1 * MiB), (1 * MiB, 2 * MiB), (3 * MiB + 100, 5000), (4 * MiB, 4096 + 7), (6 * MiB - 4096, 4096)]
    for offset, length in pieces:
        data = pattern(length, 0x60, offset)
        slot[:length] = data
        expected[offset:offset + length] = data
        with memoryview(slot) as view:
            disk.write_aligned(offset, [view[:length]])
    assert disk.direct  # no write was refused: the aligned ones really went around the page cache
    disk.commit()
    slot.close()
    assert (data_path / "disk.img").read_bytes() == bytes(expected)
    # Every written byte is stored, the untouched MiB before the last piece is a hole.
    assert block_ranges([(o, o + n) for o, n in pieces]) == stored_ranges(data_path / "disk.img", size)
    assert DIRECT_ALIGN == BLOCK


@pytest.mark.parametrize("mode", ["filesystem", "block"])
async def test_unaligned_extents_spanning_receive_slots_land_exactly(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path, mode: str) -> None:
    size = 12 * MiB
    sent = [(100, 2 * SLOT + 12345), (3 * MiB + 4095, SLOT + 1), (5 * MiB, 2 * SLOT), (8 * MiB + 512, 3 * MiB)]
    expected = bytearray(size)
    digest = cp.LayoutDigest(size)
    with contextlib.ExitStack() as stack:
        # A Block target starts full of stale bytes: its holes must be zeroed around the direct writes.
        device = stack.enter_context(loop_device(tmp_path / "target.img", size)) if mode == "block" else None
        target = await (clone_target(CDI_DATA_PATH=str(device)) if device else clone_target())
        context = client_context(clone_cert.cert.read_text(), clone_cert.key.read_text(), pki.ca_cert.read_text())
        async with CloneClient(f"https://127.0.0.1:{target.port}", context) as client:
            await client.begin(cp.Begin(size, cp.VolumeMode.FILESYSTEM))
            for offset, length in sent:
                data = pattern(length, 0x70, offset)
                expected[offset:offset + length] = data
                digest.add(offset, length, hashlib.sha256(data).digest())
                await client.put(offset, data)
            await client.finish(digest.hexdigest())
        assert (await target.result()).exit_code == 0
        written = device if device else target.disk
        with written.open("rb") as f:
            assert f.read(size) == bytes(expected)
    if mode == "filesystem":
        assert stored_ranges(target.disk, size) == block_ranges([(o, o + n) for o, n in sent])


async def test_a_cut_inside_a_receive_slot_resumes_to_the_same_bytes_and_holes(
        pki: TestPKI, clone_cert: ClientCert, clone_target: StartTarget, tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    source_dir.mkdir()
    source = source_dir / "disk.img"
    write_layout(source, FAST_SIZE, FAST_LAYOUT)
    target = await clone_target()
    # Odd budgets: each cut lands inside a slot, mid TLS record, of the big extent or the next ones.
    relay = CountingRelay("127.0.0.1", target.port, budgets=data_cuts(SLOT // 2 + 777, 3 * SLOT + 12345, 5 * MiB + 1))
    await relay.start()
    try:
        report = await run_clone(cloner_env(pki, clone_cert, relay.port, source_dir))
    finally:
        await relay.close()
    assert (await target.result()).exit_code == 0
    assert relay.cuts == 3 and report.attempts == 4
    assert sha256_of(target.disk, FAST_SIZE) == sha256_of(source, FAST_SIZE)
    # Holes recreated as holes: the target stores exactly the blocks of the extents sent (not the
    # source's zero-filled MiB, nor anything between its data).
    assert stored_ranges(target.disk, FAST_SIZE) == block_ranges(sent_ranges(source, FAST_SIZE))
    data = sum(end - start for start, end in sent_ranges(source, FAST_SIZE))
    assert report.data_bytes == data
    assert report.wire_bytes <= data + 3 * 2 * cp.EXTENT_ALIGN  # a cut costs what was in flight, no more


def test_windows_off_the_page_size_are_read_and_a_shrunk_source_is_eio(tmp_path: Path) -> None:
    """Mapped windows need page-aligned offsets and a source that still holds them: from an offset off
    the page size the window is read instead (same bytes), and a source that shrank under the cloner is
    an EIO naming where it ended, never a fault on a mapping past its end."""
    source = tmp_path / "disk.img"
    write_layout(source, FAST_SIZE, FAST_LAYOUT)
    content = source.read_bytes()
    fd = os.open(source, os.O_RDONLY)
    try:
        start = 1 * MiB + 512
        spans = [(offset, bytes(view)) for offset, view in Windows(fd, FAST_SIZE).spans(start)]
        assert spans[0][0] == start and all(data == content[offset:offset + len(data)] for offset, data in spans)
        boundary = (start // cp.EXTENT_ALIGN + 1) * cp.EXTENT_ALIGN  # from here on, mapped windows again
        assert [span for span in spans if span[0] >= boundary] == [
            (extent.offset, extent.data) for extent in extents(fd, FAST_SIZE) if extent.offset >= boundary]
        os.truncate(source, 20 * MiB)
        with pytest.raises(OSError, match="the clone source ended at 20971520") as ended:
            list(Windows(fd, FAST_SIZE, detect=False).spans())  # every byte: no SEEK_DATA to stop at the end
        assert ended.value.errno == errno.EIO
    finally:
        os.close(fd)
