"""The wire tail's files (`importer.uploadserver.wiretail`), on a real directory: what a new server reads
back after appends, seals and rotations, a torn or damaged entry, the cap, and continuing the files."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from importer.checkpoint import CheckpointStore
from importer.uploadserver.wiretail import ENTRY, MAGIC, WireTail

PIECE = 1000


def stream(size: int) -> bytes:
    return hashlib.shake_256(b"wire").digest(size)


async def fill(tail: WireTail, data: bytes, start: int, end: int, record: int) -> None:
    """Append data[start:end] as the pipeline would, then seal it as a chunk's end with the record at `record`."""
    for at in range(start, end, PIECE):
        tail.append(data[at:min(at + PIECE, end)])
    assert await tail.seal(end, record)


async def replayed(tail: WireTail, start: int) -> tuple[int, bytes, str | None]:
    found = tail.scan(start)
    return found.end, b"".join([piece async for piece in tail.replay(found)]), found.problem


async def test_a_new_server_reads_the_bytes_from_the_record_to_the_last_sealed_chunk(tmp_path: Path) -> None:
    data = stream(10_000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset()
    await fill(tail, data, 0, 4000, 0)
    await fill(tail, data, 4000, 8000, 3500)  # a record inside the first chunk: both files stay
    end, got, problem = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 3500)
    assert (end, got, problem) == (8000, data[3500:8000], None)


async def test_files_older_than_the_record_are_dropped(tmp_path: Path) -> None:
    data = stream(20_000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset()
    await fill(tail, data, 0, 4000, 0)
    await fill(tail, data, 4000, 8000, 4200)
    await fill(tail, data, 8000, 12000, 8100)  # the file holding [0, 4000) went at the previous seal
    assert tail.kept() == 4000  # only [8000, 12000): the file before it went once the record passed 8000
    end, got, _ = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 8100)
    assert (end, got) == (12000, data[8100:12000])
    assert WireTail(tmp_path / ".disk.img.checkpoint").scan(3000).end == 3000  # no longer kept


async def test_a_torn_last_entry_ends_the_kept_bytes_before_it(tmp_path: Path) -> None:
    data = stream(6000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset()
    await fill(tail, data, 0, 6000, 0)
    path = tail.paths[0]
    path.write_bytes(path.read_bytes()[:-10])  # a kill inside the last append
    end, got, problem = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 0)
    assert (end, got) == (5000, data[:5000])
    assert problem is not None and "torn or damaged entry for wire offset 5000" in problem


async def test_a_damaged_first_entry_leaves_nothing_to_feed(tmp_path: Path) -> None:
    data = stream(3000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset()
    await fill(tail, data, 0, 3000, 0)
    blob = bytearray(tail.paths[0].read_bytes())
    blob[len(MAGIC) + ENTRY.size + 7] ^= 1
    tail.paths[0].write_bytes(bytes(blob))
    end, got, problem = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 500)
    assert (end, got) == (500, b"")
    assert problem is not None and "damaged" in problem


async def test_past_the_cap_the_tail_is_given_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = stream(5000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint", limit=3000)
    tail.reset()
    with caplog.at_level(logging.WARNING, "importer.uploadserver.wiretail"):
        for at in range(0, 5000, PIECE):
            tail.append(data[at:at + PIECE])
    assert not tail.enabled
    assert "would resume at the last checkpoint record" in caplog.text
    assert "more than 3000 compressed bytes arrived since the decoder's last restart point" in caplog.text
    assert not await tail.seal(5000, 0)
    assert not any(path.exists() for path in tail.paths)
    assert WireTail(tmp_path / ".disk.img.checkpoint").scan(0).end == 0


async def test_an_adopted_tail_continues_where_the_intact_bytes_end(tmp_path: Path) -> None:
    data = stream(12_000)
    first = WireTail(tmp_path / ".disk.img.checkpoint")
    first.reset()
    await fill(first, data, 0, 4000, 0)
    await fill(first, data, 4000, 8000, 3000)
    path = first.paths[1]
    path.write_bytes(path.read_bytes()[:-10])  # [7000, 8000) torn
    second = WireTail(tmp_path / ".disk.img.checkpoint")
    found = second.scan(3000)
    assert found.end == 7000
    second.adopt(found)
    await fill(second, data, 7000, 12000, 3000)
    end, got, problem = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 3000)
    assert (end, got, problem) == (12000, data[3000:12000], None)


async def test_a_tail_restarted_at_a_record_labels_its_bytes_from_there(tmp_path: Path) -> None:
    """A server continuing a record without usable kept bytes starts its tail at the record's offset."""
    data = stream(9000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset(5000)
    await fill(tail, data, 5000, 9000, 5000)
    end, got, problem = await replayed(WireTail(tmp_path / ".disk.img.checkpoint"), 6000)
    assert (end, got, problem) == (9000, data[6000:9000], None)


async def test_pieces_the_feed_counted_elsewhere_give_the_tail_up(tmp_path: Path) -> None:
    position = [100]

    async def pieces() -> AsyncIterator[bytes]:
        position[0] += 10
        yield b"a" * 10
        position[0] += 15  # counted 5 bytes further on than the piece the tail is handed
        yield b"b" * 10

    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset(100)
    assert [p async for p in tail.recording(pieces(), lambda: position[0])] == [b"a" * 10, b"b" * 10]
    assert not tail.enabled and not any(path.exists() for path in tail.paths)


async def test_the_records_store_removes_the_tail_with_the_record(tmp_path: Path) -> None:
    data = stream(6000)
    tail = WireTail(tmp_path / ".disk.img.checkpoint")
    tail.reset()
    await fill(tail, data, 0, 3000, 0)
    await fill(tail, data, 3000, 6000, 0)  # no record past 0: both files stay
    assert all(path.exists() for path in tail.paths)
    CheckpointStore.beside(tmp_path).clear()
    assert not any(path.exists() for path in tail.paths)
