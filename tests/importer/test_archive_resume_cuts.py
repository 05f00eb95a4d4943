"""Archive records continued in process, at many cut points: the source breaks off (a retryable
`TransferInterrupted`, as a dropped connection does) at a chosen wire byte, which keeps the staging
directory and the last record (`importer.archive`), and `resume_transfer` continues the record with
the rest of the bytes from its wire offset. For a tar, a single-member tar.gz (DEFLATE block
boundaries), a multi-block tar.xz and a multi-frame tar.zst, every cut must end in the tree an
uncut import leaves, with the sha256 checksum verified across the cut (the hash state in the record)
and no more read again than one interval, one 1 MiB chunk and one block or frame; the size budget
used before the cut still counts after it. The marks the records took are checked too: some at a
member's header, some inside the large file. The kill tests (`test_archive_resume_kill`) do the same
with a real importer process SIGKILLed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from importer.archive import STAGING_NAME
from importer.archivestate import ArchiveState
from importer.archivestream import TarStream
from importer.checkpoint import CheckpointCorrupt, Checkpointer, CheckpointStore, SourceIdentity
from importer.checkpointing import CheckpointPlan
from importer.checksum import parse_checksum
from importer.errors import ImageTooLarge, TransferInterrupted, UnsafeArchive
from importer.target import Target
from importer.transfer import TransferPlan, resume_transfer, transfer
from tests.importer.test_archive_resume_kill import Tree, build_tar, extracted

MiB = 1 << 20
INTERVAL = 256 << 10
PIECE = 256 << 10  # uncompressed bytes per xz block / zstd frame
SLACK = MiB + (128 << 10)  # one chunk of a regular file, plus a block or frame


class CutSource:
    """The archive's bytes from `start`, breaking off at `cut` (None: never)."""

    def __init__(self, data: bytes, start: int = 0, cut: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._cut = cut

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._pos + size)
        if self._cut is not None and end > self._cut:
            if self._pos >= self._cut:
                raise TransferInterrupted("the connection broke off")
            end = self._cut
        piece = self._data[self._pos:end]
        self._pos = end
        return piece


def _xz(tar: bytes, tmp: Path) -> bytes:
    path = tmp / "files.tar"
    path.write_bytes(tar)
    subprocess.run(["xz", "-0", "-T2", f"--block-size={PIECE}", str(path)], check=True)
    return (tmp / "files.tar.xz").read_bytes()


def _zst(tar: bytes, _: Path) -> bytes:
    compressor = zstandard.ZstdCompressor(level=1)
    return b"".join(compressor.compress(tar[i:i + PIECE]) for i in range(0, len(tar), PIECE))


SHAPES: dict[str, Callable[[bytes, Path], bytes]] = {
    "tar": lambda tar, _: tar,
    "tar.gz": lambda tar, _: gzip.compress(tar, 6),
    "tar.xz": _xz,
    "tar.zst": _zst,
}


@pytest.fixture(scope="module")
def tar() -> tuple[bytes, Tree]:
    return build_tar(5)


def _plan(data_dir: Path, data: bytes, resume: object = None) -> TransferPlan:
    checkpointer = Checkpointer(CheckpointStore.beside(data_dir), every_bytes=INTERVAL, every_seconds=math.inf)
    identity = SourceIdentity("http://archive", etag='"1"', size=len(data))
    checkpoints = CheckpointPlan(checkpointer, identity, True, resume=resume)  # type: ignore[arg-type]
    checksum = parse_checksum("sha256:" + hashlib.sha256(data).hexdigest())
    return TransferPlan(Target(data_dir, False, 1 << 30), None, 0, True, False, checksum, checkpoints)


def _cut_and_resume(data: bytes, data_dir: Path, cut: int) -> tuple[int, ArchiveState]:
    """Import with a break at `cut`, then continue; (where the second attempt started, the record's mark)."""
    with pytest.raises(TransferInterrupted):
        transfer(CutSource(data, cut=cut), _plan(data_dir, data), lambda count, share: None)
    assert (data_dir / STAGING_NAME).is_dir()
    record = CheckpointStore.beside(data_dir).load()
    assert record is not None and record.archive_state, record
    assert 0 < record.wire_offset <= cut
    resume_transfer(CutSource(data, record.wire_offset), _plan(data_dir, data, record), lambda count, share: None)
    return record.wire_offset, ArchiveState.from_json(record.archive_state)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_archive_cut_anywhere_continues_to_the_same_tree(shape: str, tar: tuple[bytes, Tree],
                                                            tmp_path: Path) -> None:
    data = SHAPES[shape](tar[0], tmp_path)
    marks: list[ArchiveState] = []
    for i, cut in enumerate(range(INTERVAL + MiB + 4096, len(data), len(data) // 9)):
        data_dir = tmp_path / f"volume-{i}"
        data_dir.mkdir()
        resumed_at, mark = _cut_and_resume(data, data_dir, cut)
        assert cut - resumed_at <= INTERVAL + SLACK, (cut, resumed_at)
        assert extracted(data_dir) == tar[1], cut
        marks.append(mark)
    assert any(m.file == "disk.img" and 0 < m.file_written < m.file_size for m in marks), marks
    if shape == "tar":  # where a gzip block, xz block or zstd frame ends is not up to the archive
        assert any(m.file is None and m.members > 0 for m in marks), marks


def test_a_hostile_member_after_the_cut_is_still_refused(tmp_path: Path) -> None:
    escape = tarfile.TarInfo("tree/../../escaped")
    escape.size = 4
    data, _ = build_tar(5, tail=[escape])
    data_dir = tmp_path / "volume"
    data_dir.mkdir()
    with pytest.raises(UnsafeArchive, match="escapes the target directory"):
        _cut_and_resume(data, data_dir, len(data) // 2)
    assert not (tmp_path / "escaped").exists()
    # nothing extracted is left (the record is cleared by `importer.pipeline`, not called here)
    assert [p.name for p in data_dir.iterdir()] == [".disk.img.checkpoint"]


def test_a_corrupt_archive_mark_is_refused_as_a_corrupt_checkpoint() -> None:
    good = ArchiveState(100, used=10, tar_offset=512, tar_carry=b"x")
    assert ArchiveState.from_json(good.to_json()) == good
    with pytest.raises(CheckpointCorrupt):
        ArchiveState.from_json('{"available": -1}')
    with pytest.raises(CheckpointCorrupt):
        ArchiveState.from_json(good.to_json().replace('"file_written":0', '"file_written":7'))


def test_the_tar_stream_refuses_to_go_back() -> None:
    stream = TarStream(io.BytesIO(bytes(2048)), 512)
    assert stream.read(1024) == bytes(1024) and stream.tell() == 1536
    with pytest.raises(tarfile.ReadError, match="backwards"):
        stream.seek(1024)
    stream.mark()
    assert stream.read_some(100) == bytes(100) and stream.carry == bytes(100)


def test_the_size_budget_counts_what_was_extracted_before_the_cut(tar: tuple[bytes, Tree], tmp_path: Path) -> None:
    """The files extracted before the cut still count: one byte less than the archive's content is
    refused after a resume as it is without one (the record keeps the budget used and the first
    attempt's limit)."""
    data = tar[0]
    content = sum(len(body) for kind, _, body in tar[1].values() if kind == "file") - len(tar[1]["tree/a/hard"][2])
    data_dir = tmp_path / "volume"
    data_dir.mkdir()
    plan = _plan(data_dir, data)
    tight = TransferPlan(Target(data_dir, False, content - 1), None, 0, True, False, plan.checksum, plan.checkpoints)
    with pytest.raises(TransferInterrupted):
        transfer(CutSource(data, cut=len(data) // 2), tight, lambda count, share: None)
    record = CheckpointStore.beside(data_dir).load()
    assert record is not None and record.archive_state
    with pytest.raises(ImageTooLarge, match="larger than the reported available storage"):
        resume_transfer(CutSource(data, record.wire_offset), _plan(data_dir, data, record), lambda count, share: None)
