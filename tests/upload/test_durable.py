"""The upload server's restart rules without a server: what a new server decides from the record an
earlier one left (`importer.uploadserver.durable.observe`), when a record is due while chunks are fed,
and when a chunk's acknowledgement waits for its record."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from importer.checkpoint import Checkpoint, CheckpointStore
from importer.resume import Outcome
from importer.uploadserver.durable import ChunkCheckpointer, observe, refuse_resume, upload_identity

MIB = 1 << 20


def record(wire: int, *, fmt: str = "raw", compression: str | None = None, total: int = 64 * MIB,
           not_resumable: str | None = None) -> Checkpoint:
    return Checkpoint(upload_identity(False, total), fmt, compression, wire_offset=wire, target_offset=wire,
                      not_resumable=not_resumable)


def test_nothing_left_is_a_fresh_upload(tmp_path: Path) -> None:
    found = observe(CheckpointStore.beside(tmp_path), partial_exists=False)
    assert found.decision.outcome is Outcome.FRESH
    assert found.record is None and found.message == ""


def test_a_raw_record_with_its_partial_disk_is_resumed_at_its_offset(tmp_path: Path) -> None:
    store = CheckpointStore.beside(tmp_path)
    store.save(record(12 * MIB))
    found = observe(store, partial_exists=True)
    assert found.decision.outcome is Outcome.RESUMED
    assert found.record is not None and found.record.wire_offset == 12 * MIB
    assert f"at byte {12 * MIB} of {64 * MIB}" in found.message


def test_a_qcow2_upload_starts_over_and_says_why(tmp_path: Path) -> None:
    store = CheckpointStore.beside(tmp_path)
    store.save(record(0, fmt="qcow2", not_resumable="a qcow2 image is converted while it streams"))
    found = observe(store, partial_exists=True)
    assert found.decision.outcome is Outcome.STARTED_OVER and found.record is None
    assert found.message == ("Started the upload over after an upload-server restart: "
                             "a qcow2 image is converted while it streams")


def test_a_record_whose_partial_disk_is_gone_or_unreadable_starts_over(tmp_path: Path) -> None:
    store = CheckpointStore.beside(tmp_path)
    store.save(record(8 * MIB))
    assert "partly written disk" in observe(store, partial_exists=False).message
    store.path.write_text("{not json")
    assert "could not be read" in observe(store, partial_exists=True).message


def test_another_upload_size_is_not_resumed() -> None:
    assert refuse_resume(record(8 * MIB), False, 64 * MIB) is None
    why = refuse_resume(record(8 * MIB), False, 32 * MIB)
    assert why is not None and "size" in why


async def test_a_raw_record_is_due_at_the_end_of_the_chunk_being_fed(tmp_path: Path) -> None:
    checkpointer = ChunkCheckpointer(CheckpointStore.beside(tmp_path), asyncio.get_running_loop())
    assert not checkpointer.due(MIB)  # nothing began: format detection is still running
    checkpointer.begin(record(0))
    checkpointer.feeding(0, 4 * MIB)
    assert not checkpointer.due(3 * MIB)
    assert checkpointer.due(4 * MIB)
    checkpointer.save(4 * MIB, 4 * MIB, b"", None, checkpointer.now())
    assert not checkpointer.due(4 * MIB)
    assert CheckpointStore.beside(tmp_path).load() == record(0).advanced(4 * MIB, 4 * MIB, b"", None)


async def test_a_compressed_record_is_due_at_the_first_restart_point_in_the_chunk(tmp_path: Path) -> None:
    checkpointer = ChunkCheckpointer(CheckpointStore.beside(tmp_path), asyncio.get_running_loop())
    checkpointer.begin(record(0, compression="gz"))
    checkpointer.feeding(4 * MIB, 8 * MIB)
    assert not checkpointer.due(3 * MIB)
    assert checkpointer.due(4 * MIB + 10)  # the hook saves only if the decoder is between members
    checkpointer.save(5 * MIB, 5 * MIB, b"x", None, checkpointer.now())
    assert not checkpointer.due(7 * MIB)  # this chunk is covered
    checkpointer.feeding(8 * MIB, 12 * MIB)
    assert checkpointer.due(8 * MIB)


async def test_a_raw_chunk_is_acknowledged_once_its_record_is_saved(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    checkpointer = ChunkCheckpointer(CheckpointStore.beside(tmp_path), loop)
    checkpointer.begin(record(0))
    checkpointer.feeding(0, 2 * MIB)
    pipeline: asyncio.Future[None] = loop.create_future()
    timer = threading.Timer(0.2, lambda: checkpointer.save(2 * MIB, 2 * MIB, b"", None, checkpointer.now()))
    timer.start()
    assert await checkpointer.until_durable(0, 2 * MIB, pipeline)
    assert checkpointer.durable == 2 * MIB
    timer.join()


async def test_an_upload_detecting_its_format_within_the_chunk_or_not_checkpointed_is_not_waited_for(
        tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    pipeline: asyncio.Future[None] = loop.create_future()
    detecting = ChunkCheckpointer(CheckpointStore.beside(tmp_path), loop)
    assert not await asyncio.wait_for(detecting.until_durable(0, 16 << 10, pipeline), 1)
    qcow2 = ChunkCheckpointer(CheckpointStore.beside(tmp_path), loop)
    qcow2.begin(record(0, fmt="qcow2", not_resumable="qcow2 onto a Block volume"))
    assert not await asyncio.wait_for(qcow2.until_durable(0, MIB, pipeline), 1)


async def test_a_chunk_waits_for_a_pipeline_that_lags_behind_before_its_first_record(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    checkpointer = ChunkCheckpointer(CheckpointStore.beside(tmp_path), loop)
    checkpointer.feeding(0, 2 * MIB)
    pipeline: asyncio.Future[None] = loop.create_future()

    def lagging() -> None:  # the transfer thread detects the format, then reaches the chunk's end
        checkpointer.begin(record(0))
        checkpointer.save(2 * MIB, 2 * MIB, b"", None, checkpointer.now())

    timer = threading.Timer(0.3, lagging)
    timer.start()
    assert await checkpointer.until_durable(0, 2 * MIB, pipeline)
    timer.join()


async def test_a_qcow2_chunk_waits_for_its_record_or_for_the_reason_there_is_none(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    checkpointer = ChunkCheckpointer(CheckpointStore.beside(tmp_path), loop)
    checkpointer.begin(record(0, fmt="qcow2"))
    checkpointer.skip(3 * 65536)  # the image's first clusters: no record can be taken there
    pipeline: asyncio.Future[None] = loop.create_future()
    assert not await asyncio.wait_for(checkpointer.until_durable(0, 65536, pipeline), 1)
    checkpointer.feeding(0, 3 * MIB + 5)
    assert not checkpointer.due(3 * MIB)
    assert checkpointer.due(3 * MIB + 5)  # at the chunk's end, inside a cluster (the rest in the carry)
    timer = threading.Timer(0.2, lambda: checkpointer.save(3 * MIB + 5, 3 * MIB, b"x" * 5, None, checkpointer.now()))
    timer.start()
    assert await checkpointer.until_durable(0, 3 * MIB + 5, pipeline)
    timer.join()
    checkpointer.feeding(3 * MIB + 5, 6 * MIB)
    timer = threading.Timer(0.2, lambda: checkpointer.skip(6 * MIB))  # held back: the log says why
    timer.start()
    assert not await asyncio.wait_for(checkpointer.until_durable(3 * MIB + 5, 6 * MIB, pipeline), 2)
    timer.join()
