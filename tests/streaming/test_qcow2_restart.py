"""The streaming qcow2 converter continues at a checkpoint from the image's metadata alone: stopped
(as a kill would: queued writes dropped) some clusters after a checkpoint and restarted there with only
the disk and the metadata ranges the record names, it produces the disk `qemu-img convert -O raw`
gives, with the same holes as an uninterrupted pass. The rebuilt state is the uninterrupted pass's
own at that point, and where data came before the L2 table mapping it, no checkpoint is offered
until that table has been read."""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from importer.errors import InvalidImage
from importer.formats import PEEK_SIZE
from importer.qcow2stream import DiskOutput, Qcow2Stream, read_layout
from importer.qcow2stream.engine import Engine, Restarted
from importer.qcow2stream.restart import RestartMismatch, RestartRecord, metadata_ranges, plan_restart, rebuild
from importer.qcow2stream.tables import Extent
from tests.streaming.qcow2_builders import (
    L2_OFFSET_MASK,
    MiB,
    header_fields,
    l1_entries,
    qemu_img,
    qemu_io,
    qemu_raw,
    write_raw,
)

SIZE = 24 * MiB + 7 * 512
REGIONS = [(0, 3 * MiB), (5 * MiB + 4096, 2 * MiB), (11 * MiB, 4 * MiB), (SIZE - 600 * 1024, 600 * 1024)]


View = tuple[bytearray, list[tuple[int, int]], int, list[tuple[Extent, bytes]], list[int]]


class Killed(Exception):
    pass


@dataclass
class Watch:
    """A checkpoint hook that notes every point where one could be taken; with `stop_at`, it syncs at
    the first such point at or past that offset, then lets `extra` more clusters through (-1: none)
    and stops the pass (what a SIGKILL leaves: the synced disk plus some later writes)."""

    stop_at: int | None = None
    extra: int = 3
    points: list[int] = field(default_factory=list)
    seen: list[tuple[int, str | None]] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)
    taken: tuple[int, int, bytes] | None = None  # (position, high water, restart state)
    snapshot: View | None = None

    def attach(self, output: DiskOutput) -> None:
        pass

    def passed(self, stream: Qcow2Stream, start: int, data: bytes | memoryview) -> None:
        pass

    def inside(self, stream: Qcow2Stream, tail: Sequence[bytes]) -> None:
        pass

    def __call__(self, stream: Qcow2Stream) -> None:
        if self.taken is not None:
            self.extra -= 1
            if self.extra < 0:
                raise Killed
            return
        why = stream.held_back()
        self.seen.append((stream.position, why))
        if why is not None:
            self.reasons.add(why.split(" ", 1)[1])
            return
        self.points.append(stream.position)
        if self.stop_at is not None and stream.position >= self.stop_at:
            high_water = stream.sync()
            self.taken = (stream.position, high_water, stream.restart_state())
            engine = stream._engine
            assert engine is not None
            self.snapshot = _engine_view(engine, stream.position // stream.layout.cluster_size)
            if self.extra < 0:
                raise Killed  # killed right after the record


def _engine_view(engine: Engine, first: int) -> View:
    """The parts of the pass's state a restart must reproduce: cluster states before the checkpoint,
    the L2 tables waiting (by guest base) with where their next extent starts, tables passed, the
    compressed clusters cut by the checkpoint with their bytes so far, and the spooled clusters."""
    states = bytearray(engine._state[:first]).ljust(first, b"\0")
    waiting = sorted((table.guest_base, start) for start, _, table in engine._heap)
    partial = sorted((a.extent, b"".join(bytes(p) for p in a.parts)) for a in engine._active)
    return states, waiting, engine._ahead_pos, partial, engine.spooled()


def _restarted_view(restarted: Restarted, first: int) -> View:
    states = bytearray(restarted.states[:first]).ljust(first, b"\0")
    waiting = sorted((t.guest_base, start) for t in restarted.tables if (start := t.peek_start()) is not None)
    return states, waiting, restarted.tables_passed, sorted(restarted.partial), [c for c, _ in restarted.spooled]


class FileFrom:
    """The image read front to back from `offset`, as a ranged request would deliver it."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self._file = path.open("rb", buffering=0)
        self._file.seek(offset)

    def read(self, size: int = -1, /) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()


def run_stream(stream: Qcow2Stream, out: Path, *, fresh: bool, watch: Watch | None, high_water: int = 0) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o600)
    try:
        if not fresh:
            os.ftruncate(fd, high_water)  # what Target.open_for_resume does with the record's target offset
        output = DiskOutput(fd, block_device=False, sparse=True, virtual_size=stream.layout.virtual_size,
                            what=str(out))
        stream.run(output, None, hook=watch)
    finally:
        os.close(fd)


def convert(image: Path, out: Path, watch: Watch | None = None) -> None:
    source = FileFrom(image)
    try:
        stream = Qcow2Stream(source, read_layout(image.read_bytes()[:PEEK_SIZE]))
        stream.prepare()
        run_stream(stream, out, fresh=True, watch=watch)
    finally:
        source.close()


def fetch(image: Path, ranges: list[tuple[int, int]]) -> dict[int, bytes]:
    with image.open("rb") as f:
        return {start: os.pread(f.fileno(), end - start, start) for start, end in ranges}


def kill_and_restart(image: Path, out: Path, stop_at: int, extra: int = 3) -> tuple[Watch, Restarted]:
    watch = Watch(stop_at=stop_at, extra=extra)
    with pytest.raises(Killed):
        convert(image, out, watch)
    assert watch.taken is not None
    position, high_water, state = watch.taken
    kept = RestartRecord.decode(state)
    restart = plan_restart(position, fetch(image, kept.ranges), kept.spooled)
    first = position // restart.layout.cluster_size
    rebuilt = _restarted_view(restart.rebuilt, first)  # before the pass moves the tables' cursors on
    source = FileFrom(image, position)
    try:
        run_stream(Qcow2Stream.restarted(source, restart), out, fresh=False, watch=None, high_water=high_water)
    finally:
        source.close()
    assert watch.snapshot == rebuilt
    return watch, restart.rebuilt


def allocation(path: Path) -> list[tuple[int, int]]:
    """The file's data extents, as SEEK_DATA/SEEK_HOLE report them."""
    extents = []
    with path.open("rb") as f:
        fd, end, at = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while at < end:
            try:
                start = os.lseek(fd, at, os.SEEK_DATA)
            except OSError:
                break
            at = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, at))
    return extents


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("restart-reference") / "disk.raw"
    write_raw(path, SIZE, REGIONS)
    return path


def swap_l2_with_its_last_data(image: Path, l1_index: int) -> tuple[int, int]:
    """Move L2 table `l1_index` behind the data it maps: swap it with the host cluster of its last
    mapped data cluster, fixing the L1 entry and that L2 entry. Returns (old, new) table offsets."""
    cluster_bits, l1_offset, _ = header_fields(image)
    cs = 1 << cluster_bits
    table_at = l1_entries(image)[l1_index] & L2_OFFSET_MASK
    with image.open("r+b") as f:
        table = bytearray(os.pread(f.fileno(), cs, table_at))
        entries = [struct.unpack_from(">Q", table, 8 * i)[0] for i in range(cs // 8)]
        index, last = max(((i, e & L2_OFFSET_MASK) for i, e in enumerate(entries) if e & L2_OFFSET_MASK
                           and not e & (1 << 62)), key=lambda pair: pair[1])
        data = os.pread(f.fileno(), cs, last)
        struct.pack_into(">Q", table, 8 * index, (entries[index] & ~L2_OFFSET_MASK) | table_at)
        os.pwrite(f.fileno(), data, table_at)
        os.pwrite(f.fileno(), bytes(table), last)
        old_l1 = l1_entries(image)[l1_index]
        os.pwrite(f.fileno(), struct.pack(">Q", (old_l1 & ~L2_OFFSET_MASK) | last), l1_offset + 8 * l1_index)
    return table_at, last


IMAGES = {
    "plain": ("-o", "cluster_size=65536"),
    "small clusters": ("-o", "cluster_size=4096"),
    "compressed": ("-c", "-o", "cluster_size=4096"),
    "compressed zstd": ("-c", "-o", "compression_type=zstd,cluster_size=8192"),
    "extended l2": ("-o", "extended_l2=on,cluster_size=16384"),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_a_pass_restarted_at_checkpoints_gives_qemus_disk_with_the_same_holes(
        name: str, reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", *IMAGES[name], reference, image)
    expected = qemu_raw(image, tmp_path / "qemu.raw")
    whole, survey = tmp_path / "whole.raw", Watch()
    convert(image, whole, survey)
    assert whole.read_bytes() == expected
    size = image.stat().st_size
    assert len(survey.points) > 10 and survey.points[-1] > size * 3 // 4, survey.points  # checkpoints all along
    cut = []
    for fraction in (0.1, 0.35, 0.6, 0.9):
        out = tmp_path / f"restarted-{fraction}.raw"
        _, rebuilt = kill_and_restart(image, out, int(size * fraction))
        cut.append(bool(rebuilt.partial))
        assert out.read_bytes() == expected, fraction
        assert allocation(out) == allocation(whole), fraction
    if "compressed" in name:  # packed back to back: a checkpoint usually cuts one
        assert any(cut)


def test_guest_written_image_with_zero_clusters_and_discards_restarts_exactly(tmp_path: Path) -> None:
    image = tmp_path / "guest.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "cluster_size=4096", image, str(SIZE))
    qemu_io(image, "write -P 0x11 20M 3M", "write -P 0x22 0 1M", "write -z 20M 64k", "write -P 0x33 20M 4k",
            "write -z -u 21M 128k", "discard 0 64k", "write -P 0x44 9M 2M", "write -c -P 0x55 14M 256k")
    expected = qemu_raw(image, tmp_path / "qemu.raw")
    whole = tmp_path / "whole.raw"
    convert(image, whole)
    for fraction in (0.2, 0.5, 0.8):
        out = tmp_path / f"restarted-{fraction}.raw"
        kill_and_restart(image, out, int(image.stat().st_size * fraction))
        assert out.read_bytes() == expected
        assert allocation(out) == allocation(whole)


def test_data_before_its_l2_table_is_read_again_by_a_restart(reference: Path, tmp_path: Path) -> None:
    """A table behind its data: the spooled clusters are the image's bytes, so a checkpoint among them
    names them and the restart reads them again."""
    image = tmp_path / "late-table.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", reference, image)
    old, new = swap_l2_with_its_last_data(image, 1)  # guest 2-4 MiB: its table now follows its data
    expected = qemu_raw(image, tmp_path / "qemu.raw")
    out = tmp_path / "restarted.raw"
    watch, rebuilt = kill_and_restart(image, out, (old + new) // 2)
    assert watch.taken is not None and old < watch.taken[0] < new
    assert rebuilt.spooled and RestartRecord.decode(watch.taken[2]).spooled
    assert out.read_bytes() == expected


def test_no_checkpoint_while_more_data_waits_for_a_later_l2_table_than_a_restart_reads_again(
        reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "late-table.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=16384", reference, image)
    old, new = swap_l2_with_its_last_data(image, 0)  # one table maps the whole disk: all its data waits
    expected = qemu_raw(image, tmp_path / "qemu.raw")
    survey = Watch()
    convert(image, tmp_path / "whole.raw", survey)
    assert (tmp_path / "whole.raw").read_bytes() == expected
    refused = [p for p, why in survey.seen if why is not None]
    assert refused and all(old < p <= new for p in refused), (old, new, refused[:3], refused[-3:])
    assert any("held back until it arrives (a restart reads at most 4 MiB" in why for why in survey.reasons)
    assert not [p for p in survey.points if refused[0] <= p <= new]
    last = max(p for p in survey.points if p < refused[0])  # the last checkpoint: ~4 MiB spooled
    out = tmp_path / "restarted.raw"
    watch, rebuilt = kill_and_restart(image, out, last)
    assert watch.taken is not None and watch.taken[0] == last
    assert len(rebuilt.spooled) * 16384 > 3 << 20
    assert out.read_bytes() == expected


def test_ranges_name_the_header_l1_and_the_tables_passed_coalesced(reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", reference, image)
    layout = read_layout(image.read_bytes()[:PEEK_SIZE])
    tables = [(i, e & L2_OFFSET_MASK) for i, e in enumerate(l1_entries(image)[:layout.l1_needed])
              if e & L2_OFFSET_MASK]
    position = sorted(offset for _, offset in tables)[2] + 4096
    ranges = metadata_ranges(layout, tables, position)
    assert ranges[0][0] == 0 and ranges[0][1] >= layout.l1_end
    covered = {c for start, end in ranges for c in range(start // 4096, -(-end // 4096))}
    assert {offset // 4096 for _, offset in tables if offset < position} <= covered
    assert not {offset // 4096 for _, offset in tables if offset >= position} & covered
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # sorted, apart
    assert RestartRecord.decode(RestartRecord(list(ranges), [7]).encode()) == RestartRecord(list(ranges), [7])


def test_a_record_naming_too_little_metadata_or_a_torn_point_means_starting_over(
        reference: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", reference, image)
    watch = Watch(stop_at=image.stat().st_size // 2)
    with pytest.raises(Killed):
        convert(image, tmp_path / "out.raw", watch)
    assert watch.taken is not None
    position, _, state = watch.taken
    ranges = RestartRecord.decode(state).ranges
    with pytest.raises(RestartMismatch, match="tables"):
        plan_restart(position, fetch(image, ranges[:1]))
    with pytest.raises(RestartMismatch, match="not where this image's clusters start"):
        plan_restart(position + 512, fetch(image, ranges))
    with pytest.raises(RestartMismatch):
        RestartRecord.decode(b'{"qcow2_metadata": [[5, 1]], "spooled": []}')


def test_rebuild_refuses_what_the_pass_refuses(reference: Path, tmp_path: Path) -> None:
    """Two guest clusters in one host cluster, both mapped by tables before the checkpoint: the
    uninterrupted pass refuses the image, and so does a rebuild at a checkpoint after them."""
    image = tmp_path / "disk.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", reference, image)
    layout = read_layout(image.read_bytes()[:PEEK_SIZE])
    tables = [(i, e & L2_OFFSET_MASK) for i, e in enumerate(l1_entries(image)[:layout.l1_needed])
              if e & L2_OFFSET_MASK]
    first_table = tables[0][1]
    with image.open("r+b") as f:
        entry0, = struct.unpack(">Q", os.pread(f.fileno(), 8, first_table))
        os.pwrite(f.fileno(), struct.pack(">Q", entry0), first_table + 8)  # guest 4 KiB shares guest 0's cluster
    with pytest.raises(InvalidImage, match="also another guest cluster"):
        convert(image, tmp_path / "whole.raw")
    position = max(offset for _, offset in tables) + 4096
    fetched = fetch(image, metadata_ranges(layout, tables, position))
    with pytest.raises(InvalidImage, match="also another guest cluster"):
        plan_restart(position, fetched)
    clusters = {o // 4096: data for o, data in fetch(image, [(o, o + 4096) for _, o in tables]).items()}
    with pytest.raises(RestartMismatch, match="at host offset 0x1000 was not fetched again"):
        rebuild(layout, tables, position, clusters)  # the refcount table is needed too


def test_a_cluster_shared_by_compressed_data_and_a_standard_cluster_is_refused_before_and_after_a_restart(
        reference: Path, tmp_path: Path) -> None:
    """A host cluster holding compressed data of two L2 tables (qemu packs them so) that a later table
    also maps as a standard cluster: qemu-img check calls that an overlap; the pass refuses it, and so
    does a pass restarted at a checkpoint taken while that cluster waited in the spool."""
    image = tmp_path / "shared.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "cluster_size=4096", reference, image)
    spooled: list[tuple[int, list[int]]] = []

    class Spy(Watch):
        def __call__(self, stream: Qcow2Stream) -> None:
            assert stream._engine is not None
            spooled.append((stream.position, stream._engine.spooled()))

    convert(image, tmp_path / "spy.raw", Spy())
    position, shared = next((p, clusters) for p, clusters in spooled if clusters)
    cluster = shared[0]
    tables = sorted(e & L2_OFFSET_MASK for e in l1_entries(image) if e & L2_OFFSET_MASK)
    later = min(t for t in tables if t > cluster * 4096)
    with image.open("r+b") as f:
        entries = struct.unpack(">512Q", os.pread(f.fileno(), 4096, later))
        free = entries.index(0)
        os.pwrite(f.fileno(), struct.pack(">Q", cluster * 4096 | 1 << 63), later + 8 * free)
    survey = Watch()
    with pytest.raises(InvalidImage, match="is also compressed data"):
        convert(image, tmp_path / "whole.raw", survey)
    stop = next(p for p in survey.points if position <= p <= later)  # X spooled, its table still ahead
    restarted = tmp_path / "restarted.raw"
    with pytest.raises(InvalidImage, match="is also compressed data") as refused:
        kill_and_restart(image, restarted, stop, extra=-1)
    assert any(frame.name == "run_stream" and frame.locals.get("fresh") is False
               for frame in refused.traceback), "refused by the restarted pass"
