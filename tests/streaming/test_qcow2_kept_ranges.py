"""The ranges a qcow2 restart reads again, kept on the volume (an upload's source cannot be asked for
them), and the one rebuild both restarts share (`importer.checkpointrestart.rebuild`).

The real transfer thread converts real `qemu-img` images with records due every few clusters (so
most fall inside a cluster, with the bytes read of it in the carry), keeping the ranges in a
`RangeStore`; it is stopped part way as a kill would stop it. The converter rebuilt from the kept
ranges is the one rebuilt from the image's own bytes (what ranged requests return), and continuing
with it gives `qemu-img convert -O raw`'s disk with an uninterrupted pass's holes. When a record
would need more kept bytes than the bound, no record is taken and the log says why; old pieces
are pruned from the file once newer records no longer name them. Images: `qemu-img convert` plain,
with compressed clusters, and with an L2 table moved behind its data (clusters spooled at the record)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import resource
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from importer.checkpoint import Checkpoint, Checkpointer, CheckpointStore
from importer.checkpointing import CheckpointPlan
from importer.checkpointranges import COMPACT_SLACK, LocalRanges, RangeStore, RangesUnavailable
from importer.checkpointrestart import rebuild
from importer.qcow2stream.restart import Restart, RestartRecord
from importer.target import discover_target
from importer.transfer import TransferPlan, resume_transfer, transfer
from importer.uploadserver.durable import upload_identity
from tests.streaming.qcow2_builders import MiB, convert_with_stream, patterned, qemu_img, qemu_raw
from tests.streaming.test_qcow2_restart import FileFrom, _restarted_view, allocation, swap_l2_with_its_last_data

SIZE = 12 * MiB


class Killed(Exception):
    pass


class ImageRanges:
    """What ranged requests to the image's source return: the image file's own bytes."""

    where = "the image file"

    def __init__(self, image: Path) -> None:
        self._image = image

    async def fetch(self, ranges: Sequence[tuple[int, int]]) -> Mapping[int, bytes]:
        with self._image.open("rb") as f:
            return {start: os.pread(f.fileno(), end - start, start) for start, end in ranges}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("kept-ranges")
    rng = random.Random(7)
    raw = directory / "disk.raw"
    raw.write_bytes(b"".join(rng.randbytes(64 << 10) if (p := rng.random()) < 0.3 else patterned(64 << 10)
                             if p < 0.7 else bytes(64 << 10) for _ in range(SIZE // (64 << 10))))
    for name, options in {"plain": ("-o", "cluster_size=65536"),
                          "compressed": ("-c", "-o", "cluster_size=4096")}.items():
        qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, raw, directory / f"{name}.qcow2")
        qemu_raw(directory / f"{name}.qcow2", directory / f"{name}.qemu.raw")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", raw, directory / "late.qcow2")
    old, new = swap_l2_with_its_last_data(directory / "late.qcow2", 1)  # guest 2-4 MiB: its table after its data
    (directory / "late.between").write_text(str((old + new) // 2))
    qemu_raw(directory / "late.qcow2", directory / "late.qemu.raw")
    for name in ("plain", "compressed", "late"):
        convert_with_stream(directory / f"{name}.qcow2", directory / f"{name}.stream")
    return directory


def plan(data: Path, image: Path, limit: int, resume: Checkpoint | None = None,
         restart: Restart | None = None) -> tuple[TransferPlan, Checkpointer]:
    checkpointer = Checkpointer(CheckpointStore.beside(data), every_bytes=48 << 10, every_seconds=math.inf)
    checkpointer.ranges = RangeStore.beside(CheckpointStore.beside(data).path, limit)
    target = discover_target(data, None, keep_partial=resume is not None)
    checkpoints = CheckpointPlan(checkpointer, upload_identity(False, image.stat().st_size), True, resume, restart)
    return TransferPlan(target, None, 0, False, False, None, checkpoints), checkpointer


def run_until(data: Path, image: Path, stop: int, limit: int = 64 << 20) -> Checkpointer:
    """The transfer thread over `image`, stopped once it has read `stop` bytes (a kill)."""
    transfer_plan, checkpointer = plan(data, image, limit)
    transfer_plan.target.clean()

    def on_bytes(count: int, _share: float) -> None:
        if count >= stop:
            raise Killed

    source = FileFrom(image)
    try:
        with pytest.raises(Killed):
            transfer(source, transfer_plan, on_bytes)
    finally:
        source.close()
    return checkpointer


@pytest.mark.parametrize(("name", "at"), [("plain", 0.3), ("plain", 0.7), ("compressed", 0.3), ("compressed", 0.7),
                                         ("late", None)])
def test_kept_ranges_rebuild_the_converter_the_image_rebuilds_and_the_disk_comes_out_whole(
        tmp_path: Path, images: Path, name: str, at: float | None) -> None:
    image = images / f"{name}.qcow2"
    data = tmp_path / "data"
    data.mkdir()
    # late: stopped while clusters wait for the L2 table behind them (the spool's bytes are kept too)
    run_until(data, image, int(image.stat().st_size * at) if at is not None else
              int((images / "late.between").read_text()))
    record = CheckpointStore.beside(data).load()
    assert record is not None and record.format == "qcow2" and record.wire_offset > 0, record
    assert at is not None or RestartRecord.decode(record.decoder_state).spooled
    kept = RangeStore.beside(CheckpointStore.beside(data).path)
    from_store, why = asyncio.run(rebuild(record, LocalRanges(kept)))
    from_image, why_image = asyncio.run(rebuild(record, ImageRanges(image)))
    assert why is None and why_image is None and from_store is not None and from_image is not None
    first = from_image.position // from_image.layout.cluster_size
    assert from_store.position == from_image.position == record.wire_offset - len(record.carry)
    assert _restarted_view(from_store.rebuilt, first) == _restarted_view(from_image.rebuilt, first)
    assert from_store.tables == from_image.tables

    transfer_plan, _ = plan(data, image, 64 << 20, record, from_store)
    source = FileFrom(image, record.wire_offset)
    try:
        result = resume_transfer(source, transfer_plan, lambda _count, _share: None)
    finally:
        source.close()
    assert result.written == SIZE
    disk = transfer_plan.target.write_path
    with disk.open("rb") as f:
        assert hashlib.sha256(f.read(SIZE)).hexdigest() == \
            hashlib.sha256((images / f"{name}.qemu.raw").read_bytes()).hexdigest()
    assert allocation(disk) == allocation(images / f"{name}.stream")


def test_a_record_needing_more_kept_bytes_than_the_bound_is_not_taken_and_the_log_says_why(
        tmp_path: Path, images: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = images / "compressed.qcow2"  # 4 KiB clusters: an L2 table every 2 MiB of disk
    data = tmp_path / "data"
    data.mkdir()
    limit = 24 << 10
    with caplog.at_level(logging.INFO, logger="importer.checkpointing"):
        run_until(data, image, image.stat().st_size - 4096, limit)
    record = CheckpointStore.beside(data).load()
    assert record is not None and record.wire_offset > 0
    kept = RestartRecord.decode(record.decoder_state).ranges
    assert sum(end - start for start, end in kept) <= limit
    assert record.wire_offset < image.stat().st_size // 2  # records stopped once the tables outgrew the bound
    assert any(f"more than the {limit} the upload server keeps beside its record" in r.getMessage()
               for r in caplog.records), caplog.text
    # the last record taken still rebuilds from what was kept
    restart, why = asyncio.run(rebuild(record, LocalRanges(RangeStore.beside(CheckpointStore.beside(data).path))))
    assert why is None and restart is not None


def test_pieces_no_record_names_any_more_are_pruned(tmp_path: Path) -> None:
    store = RangeStore(tmp_path / "kept", limit=1 << 20)
    store.reset()
    head = (0, 4096)
    pieces = {0: bytes(range(256)) * 16}
    for step in range(1, 200):  # a compressed cluster cut at a new place by every record
        cut = (step * 65536, step * 65536 + 8192)
        pieces[cut[0]] = os.urandom(8192)
        assert store.keep([head, cut], [(0, pieces[0]), (cut[0], pieces[cut[0]])]) is None
    # what the last two records name is there, the rest is gone
    assert store.read([head, (199 * 65536, 199 * 65536 + 8192)])[199 * 65536] == pieces[199 * 65536]
    assert store.read([(198 * 65536, 198 * 65536 + 8192)])[198 * 65536] == pieces[198 * 65536]
    with pytest.raises(RangesUnavailable):
        store.read([(5 * 65536, 5 * 65536 + 8192)])
    assert store.path.stat().st_size <= 2 * COMPACT_SLACK


def test_a_torn_last_piece_is_ignored_and_a_missing_store_means_starting_over(tmp_path: Path) -> None:
    store = RangeStore(tmp_path / "kept")
    store.reset()
    assert store.keep([(0, 100)], [(0, b"a" * 100)]) is None
    with store.path.open("ab") as f:
        f.write(b"\x00" * 10)  # a kill while appending the next checkpoint's pieces
    assert store.read([(0, 100)]) == {0: b"a" * 100}
    store.clear()
    record = Checkpoint(upload_identity(False, 10), "qcow2", None, wire_offset=65536,
                        decoder_state=RestartRecord([(0, 100)], []).encode())
    restart, why = asyncio.run(rebuild(record, LocalRanges(store)))
    assert restart is None and why is not None and "gone" in why


def test_a_full_volume_skips_the_record_and_leaves_the_kept_pieces_readable(tmp_path: Path) -> None:
    store = RangeStore(tmp_path / "kept")
    store.reset()
    assert store.keep([(0, 4096)], [(0, b"h" * 4096)]) is None
    limit = store.path.stat().st_size + 1000  # the next append runs out of room half way (EFBIG, as ENOSPC)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        why = store.keep([(0, 4096), (65536, 65536 + 8192)], [(65536, b"c" * 8192)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert why is not None and "could not be kept" in why
    assert store.path.stat().st_size < limit  # the torn entry is gone
    assert store.keep([(0, 4096), (131072, 131072 + 100)], [(131072, b"d" * 100)]) is None
    assert store.read([(0, 4096), (131072, 131172)]) == {0: b"h" * 4096, 131072: b"d" * 100}
