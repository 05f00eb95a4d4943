"""The synchronous half of an import, run in a worker thread: meter and hash the wire bytes, peel
compression, detect the format, and write the stream to where it belongs: the target for raw, ISO
and qcow2 (converted on the fly by `importer.qcow2stream`), scratch space for formats qemu-img must
convert from a file, or the volume's directory for archives.

Scratch space is used only when a format truly needs random access, and the reason travels with the
result (and with `ScratchSpaceRequired` when the import has none), so logs and the DataVolume can say
why. A qcow2 goes to scratch only when the streaming reader declines it before writing anything
(its L1 table after the data, tables too large to hold, unusual header fields); it then replays
what it had read, so the download is still a single pass.

Checkpoints: when the plan carries a `CheckpointPlan`, `importer.checkpointing` records how far the
target is consistent as it is written (raw images, raw images compressed once with gzip, xz or
zstd, plain qcow2, and qcow2 compressed once: `importer.compressedcheckpoints`). `resume_transfer`
continues such a record: the meter's hash and count are restored, the carried bytes are replayed above
the meter (they were hashed before) and a fresh decoder starts at the gzip DEFLATE block, xz block or
zstd frame boundary, or the qcow2 converter continues with the state `importer.main` rebuilt from the
image's metadata (for a compressed qcow2, after a decoder restarted at the record's decoder point has
decoded again the few bytes between it and the converter's position, which are dropped).

Archives are checkpointed too, at their tar stream's marks (`importer.archivecheckpoint`): a record with
an `archive_state` continues the extraction in the volume's staging directory (`importer.archive`).

`importer.pipeline` calls `transfer` via `asyncio.to_thread` with a reader bridged from the source,
then runs the async steps (qemu-img, resize, commit) on what this returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from importer import checkpointing, hashstate
from importer.archive import extract_tar
from importer.archivecheckpoint import ArchiveCheckpoints
from importer.archivestate import ArchiveState
from importer.checkpointing import CheckpointPlan
from importer.checksum import ChecksumSpec, Hasher
from importer.compressedcheckpoints import compressed_qcow2_checkpoints
from importer.compressedqcow2 import CompressedRestart, SkippingReader
from importer.errors import ImageTooLarge
from importer.formats import (
    Compression,
    DecompressingReader,
    ImageFormat,
    OpenedImage,
    PrefixReader,
    open_image,
)
from importer.qcow2header import Qcow2Header
from importer.qcow2stream import ClusterHook, Decline, DiskOutput, Qcow2Stream, SpoolExhausted, read_layout
from importer.reader import Reader
from importer.target import Target
from importer.writer import CHUNK, SparseWriter

CONVERT_DOWNLOAD_SHARE = 0.5  # of the progress bar, when qemu-img converts after the download


class ScratchSpaceRequired(Exception):
    """The image must be converted from scratch space and none was provided (not a failure: the
    controller retries with a scratch volume). `image` and `reason` say which image and why; `fmt` is
    qemu-img's name for it when the source's bytes are the image itself (no compression around it), so
    a source that can serve byte ranges could let qemu-img read it in place instead."""

    def __init__(self, image: str, reason: str, fmt: str | None = None) -> None:
        super().__init__(f"{image} needs scratch space: {reason}")
        self.image = image
        self.reason = reason
        self.fmt = fmt


class Destination(Enum):
    TARGET = "target"
    SCRATCH = "scratch"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class TransferPlan:
    target: Target
    scratch_file: Path | None  # None (and no space): the import has no scratch space
    scratch_space: int
    archive: bool
    preallocate: bool
    checksum: ChecksumSpec | None
    checkpoints: CheckpointPlan | None = None


@dataclass(frozen=True)
class TransferResult:
    destination: Destination
    image: OpenedImage
    written: int
    wire_bytes: int
    scratch_reason: str | None = None  # why the image went to scratch space
    spooled: int = 0  # bytes the streaming qcow2 reader had to keep in scratch space


class MeteredReader:
    """Counts and hashes the bytes as they arrive, before any decompression."""

    def __init__(self, inner: Reader, checksum: ChecksumSpec | None, on_bytes: Callable[[int], None], *,
                 hasher: Hasher | None = None, count: int = 0) -> None:
        self._inner = inner
        self._hasher = hasher if hasher is not None else checksum.new_hasher() if checksum else None
        self._checksum = checksum
        self._on_bytes = on_bytes
        self.count = count

    def hash_state(self) -> bytes | None:
        """The checksum's state when it can be saved (`importer.hashstate`), else None."""
        return self._hasher.state() if isinstance(self._hasher, hashstate.ResumableHash) else None

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        if data:
            self.count += len(data)
            if self._hasher is not None:
                self._hasher.update(data)
            self._on_bytes(self.count)
        return data

    def drain(self, limit: int) -> None:
        """Read to EOF (trailing bytes count for the checksum), refusing endless trailers."""
        extra = 0
        while piece := self.read(CHUNK):
            extra += len(piece)
            if extra > limit:
                raise ImageTooLarge(f"source sent more than {limit} bytes after the end of the image")

    def verify(self) -> None:
        if self._checksum is not None and self._hasher is not None:
            self._checksum.verify(self._hasher)


def scratch_reason(image: OpenedImage) -> str | None:
    """Why an image needs scratch space before anything is read, or None if it can stream."""
    if image.format is ImageFormat.QCOW2:
        try:
            read_layout(image.header)
        except Decline as e:
            return _declined(e)
        return None
    if image.format.needs_conversion:
        return f"{image.format.value} images are converted by qemu-img, which needs random access to a whole file"
    return None


def _declined(decline: Decline) -> str:
    return f"the streaming qcow2 reader declined it: {decline.reason}"


def transfer(source: Reader, plan: TransferPlan, on_bytes: Callable[[int, float], None]) -> TransferResult:
    """`on_bytes(count, share)`: wire bytes so far, and the share of the progress bar the download owns."""
    share = 1.0
    metered = MeteredReader(source, plan.checksum, lambda count: on_bytes(count, share),
                            hasher=checkpointing.resumable_hasher(plan.checksum, plan.checkpoints))
    image = open_image(metered)
    checkpointing.begin(plan.checkpoints, image, archive=plan.archive, checksum=plan.checksum, meter=metered)
    if plan.archive:
        written = extract_tar(image.reader, plan.target.data_path, plan.target.available,
                              _archive_checkpoints(plan, metered, image.layers))
        return _finish(metered, plan, TransferResult(Destination.ARCHIVE, image, written, 0))
    if image.format is ImageFormat.QCOW2:
        Qcow2Header.parse(image.header).check(plan.target.available)
    reader, reason = image.reader, scratch_reason(image)
    if image.format is ImageFormat.QCOW2 and reason is None:
        stream = Qcow2Stream(image.reader, read_layout(image.header))
        checkpointing.no_record_before(plan.checkpoints, stream.prefix_end)
        try:
            stream.prepare()
        except Decline as e:  # nothing is lost: replay what the reader consumed into scratch space
            reader, reason = PrefixReader(stream.prefix, image.reader), _declined(e)
            checkpointing.no_record_before(plan.checkpoints, None)
        else:
            written, spooled = _stream_qcow2(stream, image, plan, _qcow2_hook(plan, metered, image))
            return _finish(metered, plan, TransferResult(Destination.TARGET, image, written, 0, spooled=spooled))
    if reason is None:
        hook = checkpointing.writer_hook(plan.checkpoints, metered, image.layers)
        return _finish(metered, plan, TransferResult(Destination.TARGET, image, _write_target(reader, plan, hook), 0))
    if plan.scratch_file is None or plan.scratch_space <= 0:
        raise ScratchSpaceRequired(image.description, reason, None if image.compression else image.format.value)
    share = CONVERT_DOWNLOAD_SHARE
    written = _write_file(reader, plan.scratch_file, plan.scratch_space, "scratch space")
    return _finish(metered, plan, TransferResult(Destination.SCRATCH, image, written, 0, scratch_reason=reason))


def _qcow2_hook(plan: TransferPlan, metered: MeteredReader, image: OpenedImage) -> ClusterHook | None:
    if image.compression:
        return compressed_qcow2_checkpoints(plan.checkpoints, metered, image.layers)
    return checkpointing.qcow2_checkpoints(plan.checkpoints, metered, image.layers)


def _archive_checkpoints(plan: TransferPlan, metered: MeteredReader,
                         layers: tuple[PrefixReader | DecompressingReader, ...]) -> ArchiveCheckpoints | None:
    """The archive's records (`importer.archivecheckpoint`), when this attempt takes any."""
    checkpoints = plan.checkpoints
    if checkpoints is None or not checkpoints.checkpointer.active:
        return None
    return ArchiveCheckpoints(checkpoints, metered, layers, plan.target.data_path)


def _finish(metered: MeteredReader, plan: TransferPlan, result: TransferResult) -> TransferResult:
    """Read what follows the image (it counts for the checksum) and verify the checksum."""
    metered.drain(limit=max(plan.target.available, 1 << 20))
    metered.verify()
    return replace(result, wire_bytes=metered.count)


def _stream_qcow2(stream: Qcow2Stream, image: OpenedImage, plan: TransferPlan, hook: ClusterHook | None,
                  start: int | None = None) -> tuple[int, int]:
    """Convert onto the target, from the beginning or (`start`) continuing an earlier attempt's disk."""
    target = plan.target
    spool_dir = plan.scratch_file.parent if plan.scratch_file is not None and plan.scratch_space > 0 else None
    fd = target.open_for_write() if start is None else target.open_for_resume(start)
    try:
        output = DiskOutput(fd, block_device=target.block, sparse=not (target.block and plan.preallocate),
                            virtual_size=stream.layout.virtual_size, what=str(target.disk_path))
        written = stream.run(output, spool_dir, hook=hook)
        checkpointing.no_record_before(plan.checkpoints, None)  # what follows the image is only drained
        return written, stream.spilled
    except SpoolExhausted as e:
        raise ScratchSpaceRequired(image.description, f"the streaming qcow2 reader ran out of room: {e.reason}") \
            from e
    finally:
        os.close(fd)


def _write_target(reader: Reader, plan: TransferPlan, hook: Callable[[SparseWriter], None] | None = None,
                  start: int | None = None) -> int:
    """Write the image to the target, from the beginning or (`start`) continuing an earlier attempt's disk."""
    target = plan.target
    fd = target.open_for_write() if start is None else target.open_for_resume(start)
    try:
        writer = SparseWriter(fd, block_device=target.block, sparse=not (target.block and plan.preallocate),
                              limit=target.available, what=str(target.disk_path), start=start or 0, on_chunk=hook)
        return writer.copy_from(reader)
    finally:
        os.close(fd)


def resume_transfer(source: Reader, plan: TransferPlan, on_bytes: Callable[[int, float], None]) -> TransferResult:
    """Continue the import `plan.checkpoints.resume` recorded; `source` starts at its wire offset."""
    assert plan.checkpoints is not None and plan.checkpoints.resume is not None
    record = plan.checkpoints.resume
    hasher = None
    if plan.checksum is not None:
        assert record.hash_state is not None  # importer.resume.decide starts over otherwise
        hasher = hashstate.ResumableHash.restore(plan.checksum.algorithm, record.hash_state, record.hash_library)
    metered = MeteredReader(source, plan.checksum, lambda count: on_bytes(count, 1.0), hasher=hasher,
                            count=record.wire_offset)
    wire = PrefixReader(record.carry, metered)
    if record.format == ImageFormat.QCOW2.value:
        return _resume_qcow2(metered, wire, plan)
    layers: tuple[PrefixReader | DecompressingReader, ...] = (wire,)
    compression: tuple[Compression, ...] = ()
    reader: Reader = wire
    if record.compression is not None:
        compression = (Compression(record.compression),)
        decoder = DecompressingReader(compression[0], wire, at_boundary=True, state=record.decoder_state)
        reader, layers = decoder, (wire, decoder, PrefixReader(b"", decoder))
    image = OpenedImage(reader, compression, ImageFormat(record.format), b"", layers)
    plan.checkpoints.checkpointer.begin(record)
    if record.archive_state:  # a tar: extraction goes on from the record's mark (`importer.archive`)
        written = extract_tar(reader, plan.target.data_path, plan.target.available,
                              _archive_checkpoints(plan, metered, layers), ArchiveState.from_json(record.archive_state))
        return _finish(metered, plan, TransferResult(Destination.ARCHIVE, image, written, 0))
    hook = checkpointing.writer_hook(plan.checkpoints, metered, layers)
    written = _write_target(reader, plan, hook, start=record.target_offset)
    return _finish(metered, plan, TransferResult(Destination.TARGET, image, written, 0))


def _resume_qcow2(metered: MeteredReader, wire: PrefixReader, plan: TransferPlan) -> TransferResult:
    """Continue a qcow2 record: the converter's state was rebuilt from the image's metadata
    (`importer.qcow2stream.restart`, fetched again by `importer.main`); the disk keeps what it has."""
    assert plan.checkpoints is not None and plan.checkpoints.resume is not None
    record, restart = plan.checkpoints.resume, plan.checkpoints.restart
    assert restart is not None  # importer.main rebuilds it before it resumes a qcow2 record
    image = OpenedImage(wire, (), ImageFormat.QCOW2, b"", (wire,))
    if record.compression is not None:  # from the decoder point, dropping what the converter had before
        state = CompressedRestart.decode(record.decoder_state)  # importer.resume.decide checked it
        decoder = DecompressingReader(Compression(record.compression), wire, at_boundary=True, state=state.decoder)
        decoded = PrefixReader(b"", SkippingReader(decoder, state.skip))
        image = OpenedImage(decoded, (decoder.kind,), ImageFormat.QCOW2, b"", (wire, decoder, decoded))
    plan.checkpoints.checkpointer.begin(record)
    written, spooled = _stream_qcow2(Qcow2Stream.restarted(image.reader, restart), image, plan,
                                     _qcow2_hook(plan, metered, image), start=record.target_offset)
    return _finish(metered, plan, TransferResult(Destination.TARGET, image, written, 0, spooled=spooled))


def _write_file(reader: Reader, path: Path, limit: int, what: str) -> int:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return SparseWriter(fd, block_device=False, sparse=True, limit=limit, what=what).copy_from(reader)
    finally:
        os.close(fd)
