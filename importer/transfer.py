"""The synchronous half of an import, run in a worker thread: meter and hash the wire bytes, peel
compression, detect the format, and write the stream to where it belongs (the target for raw and ISO,
scratch for formats qemu-img must convert, or the volume's directory for archives).

`importer.pipeline` calls `transfer` via `asyncio.to_thread` with a reader bridged from the source,
then runs the async steps (qemu-img, resize, commit) on what this returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from importer.archive import extract_tar
from importer.checksum import ChecksumSpec
from importer.errors import ImageTooLarge
from importer.formats import ImageFormat, OpenedImage, Reader, open_image
from importer.qcow2header import Qcow2Header
from importer.target import Target
from importer.writer import CHUNK, SparseWriter

CONVERT_DOWNLOAD_SHARE = 0.5  # of the progress bar, when qemu-img converts after the download


class ScratchSpaceRequired(Exception):
    """The image must be converted from scratch space and none was provided (not a failure: the
    controller retries with a scratch volume)."""


class Destination(Enum):
    TARGET = "target"
    SCRATCH = "scratch"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class TransferPlan:
    target: Target
    scratch_file: Path
    scratch_space: int
    archive: bool
    preallocate: bool
    checksum: ChecksumSpec | None


@dataclass(frozen=True)
class TransferResult:
    destination: Destination
    image: OpenedImage
    written: int
    wire_bytes: int


class MeteredReader:
    """Counts and hashes the bytes as they arrive, before any decompression."""

    def __init__(self, inner: Reader, checksum: ChecksumSpec | None, on_bytes: Callable[[int], None]) -> None:
        self._inner = inner
        self._hasher = checksum.new_hasher() if checksum else None
        self._checksum = checksum
        self._on_bytes = on_bytes
        self.count = 0

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


def route(image: OpenedImage, plan: TransferPlan) -> Destination:
    if plan.archive:
        return Destination.ARCHIVE
    return Destination.SCRATCH if image.format.needs_conversion else Destination.TARGET


def transfer(source: Reader, plan: TransferPlan, on_bytes: Callable[[int, float], None]) -> TransferResult:
    """`on_bytes(count, share)`: wire bytes so far, and the share of the progress bar the download owns."""
    share = 1.0
    metered = MeteredReader(source, plan.checksum, lambda count: on_bytes(count, share))
    image = open_image(metered)
    destination = route(image, plan)
    if destination is Destination.SCRATCH:
        if plan.scratch_space <= 0:
            raise ScratchSpaceRequired(f"{image.description} needs conversion from scratch space")
        share = CONVERT_DOWNLOAD_SHARE
    if image.format is ImageFormat.QCOW2 and destination is Destination.SCRATCH:
        Qcow2Header.parse(image.header).check(plan.target.available)
    if destination is Destination.ARCHIVE:
        written = extract_tar(image.reader, plan.target.data_path, plan.target.available)
    elif destination is Destination.SCRATCH:
        written = _write_file(image.reader, plan.scratch_file, plan.scratch_space, "scratch space")
    else:
        written = _write_target(image.reader, plan)
    metered.drain(limit=max(plan.target.available, 1 << 20))
    metered.verify()
    return TransferResult(destination, image, written, metered.count)


def _write_target(reader: Reader, plan: TransferPlan) -> int:
    target = plan.target
    fd = target.open_for_write()
    try:
        writer = SparseWriter(fd, block_device=target.block, sparse=not (target.block and plan.preallocate),
                              limit=target.available, what=str(target.disk_path))
        return writer.copy_from(reader)
    finally:
        os.close(fd)


def _write_file(reader: Reader, path: Path, limit: int, what: str) -> int:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return SparseWriter(fd, block_device=False, sparse=True, limit=limit, what=what).copy_from(reader)
    finally:
        os.close(fd)
