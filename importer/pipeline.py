"""The import pipeline: source stream → transfer thread → (validate → convert) → resize → commit.

Phases keep upstream's names in the log (Info, TransferDataFile, TransferScratch, TransferDataDir,
Convert, Resize, Complete). Raw, ISO, qcow2 and their compressed forms stream straight to the target
in one pass (qcow2 through `importer.qcow2stream`); formats that qemu-img must convert from a file
go through scratch space, with the reason logged, where the file is checked by our header parser
before download and by `qemu-img info` and `check` after it.
On any failure the partial disk and scratch file are removed, so nothing looks imported, except
that a checkpointed import (`ImportRequest.checkpoints`, `importer.checkpoint`) keeps its partial
disk and record when the source broke off (a retryable failure), so the restarted pod continues it.
Called by `importer.main`; the upload server calls it with its request body as the stream (with
checkpoints at each chunk's end for resumable uploads, `importer.uploadserver.durable`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cdi.sizing import usable_space
from importer.blockio import no_space_guard, preallocate, supports_direct_io
from importer.bridge import ChunkBridge
from importer.checkpoint import Checkpoint, Checkpointer, RecordStore
from importer.checkpointing import CheckpointPlan
from importer.checksum import ChecksumSpec
from importer.errors import ImportFailure, too_large
from importer.imagecheck import check_image
from importer.progress import Progress
from importer.qcow2stream.restart import Restart
from importer.qemu import QemuImg
from importer.sources.base import SourceStream
from importer.target import Target, prepare_scratch
from importer.transfer import (
    CONVERT_DOWNLOAD_SHARE,
    Destination,
    TransferPlan,
    TransferResult,
    resume_transfer,
    transfer,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointSettings:
    """Where an import's checkpoints go and how often; `resume` is the record to continue."""

    store: RecordStore
    every_bytes: int
    every_seconds: float
    source_resumable: bool
    resume: Checkpoint | None = None
    checkpointer: Checkpointer | None = None  # who decides when a record is due (None: every N bytes or seconds)
    restart: Restart | None = None  # a qcow2 record's converter state, rebuilt from the image's metadata


@dataclass(frozen=True)
class ImportRequest:
    target: Target
    scratch_dir: Path | None  # None: the pod has no scratch volume
    archive: bool
    image_size: int | None
    overhead: Decimal
    preallocate: bool
    checksum: ChecksumSpec | None
    cache_try_none: bool = False
    checkpoints: CheckpointSettings | None = None


@dataclass(frozen=True)
class ImportOutcome:
    preallocation_applied: bool
    virtual_size: int
    detected: str
    checkpoints_saved: int = 0
    checkpoint_seconds: float = 0.0


class Pipeline:
    def __init__(self, qemu: QemuImg, progress: Progress) -> None:
        self._qemu = qemu
        self._progress = progress

    async def run(self, stream: SourceStream, request: ImportRequest) -> ImportOutcome:
        target = request.target
        scratch_file, space = prepare_scratch(request.scratch_dir)
        checkpoints = _checkpoint_plan(stream, request)
        plan = TransferPlan(target, scratch_file, space, request.archive, request.preallocate, request.checksum,
                            checkpoints)
        if checkpoints is None or checkpoints.resume is None:
            target.clean()
        try:
            result = await self._transfer(stream, plan)
            log.info("transferred %d wire bytes as %s to %s", result.wire_bytes, result.image.description,
                     result.destination.value)
            if result.scratch_reason:
                log.info("TransferScratch: %s", result.scratch_reason)
            if result.spooled:
                log.info("kept %d bytes of out-of-order qcow2 data in scratch space", result.spooled)
            if result.destination is Destination.ARCHIVE:
                self._progress.raise_to(100.0)
                return ImportOutcome(False, result.written, result.image.description)
            if result.destination is Destination.SCRATCH:
                assert scratch_file is not None  # transfer writes to scratch only when there is some
                virtual_size = await self._convert(str(scratch_file), result.image.format.value, request,
                                                   download_share=CONVERT_DOWNLOAD_SHARE)
            else:
                virtual_size = result.written
            final_size = self._resize(target, virtual_size, request)
            target.commit()
        except BaseException as e:
            if not _keep_for_restart(e, checkpoints):
                target.discard()
                if checkpoints is not None:
                    checkpoints.checkpointer.store.clear()
            raise
        finally:
            if scratch_file is not None:
                scratch_file.unlink(missing_ok=True)
        self._progress.raise_to(100.0)
        log.info("Complete: %s, virtual size %d", target.disk_path, final_size)
        saved, seconds = 0, 0.0
        if checkpoints is not None:
            checkpoints.checkpointer.store.clear(result.written)
            saved, seconds = checkpoints.checkpointer.saved, checkpoints.checkpointer.seconds
            log.info("wrote %d checkpoints in %.3f s", saved, seconds)
        return ImportOutcome(request.preallocate, final_size, result.image.description, saved, seconds)

    async def _transfer(self, stream: SourceStream, plan: TransferPlan) -> TransferResult:
        def on_bytes(count: int, share: float) -> None:
            self._progress.count(count, stream.total)
            if stream.total:
                self._progress.raise_to(min(count, stream.total) * 100.0 * share / stream.total)

        log.info("Info: reading %s", stream.description)
        bridge = ChunkBridge(stream.chunks)
        resuming = plan.checkpoints is not None and plan.checkpoints.resume is not None
        try:
            return await asyncio.to_thread(resume_transfer if resuming else transfer, bridge.reader, plan, on_bytes)
        finally:
            await bridge.close()

    async def run_in_place(self, source: str, fmt: str, request: ImportRequest) -> ImportOutcome:
        """Convert an image qemu-img reads where it is (an NBD export of the source, `importer.ranged`):
        the same checks, conversion, resize and commit as from scratch space, without the download."""
        target = request.target
        target.clean()
        try:
            virtual_size = await self._convert(source, fmt, request, download_share=0.0)
            final_size = self._resize(target, virtual_size, request)
            target.commit()
        except BaseException:
            target.discard()
            raise
        self._progress.raise_to(100.0)
        log.info("Complete: %s, virtual size %d", target.disk_path, final_size)
        return ImportOutcome(request.preallocate, final_size, fmt)

    async def _convert(self, source: str, fmt: str, request: ImportRequest, *, download_share: float) -> int:
        target = request.target
        info = await self._qemu.info(source, fmt)
        check_image(info, expected_format=fmt, image_path=source, available=target.available)
        await self._qemu.check(source, fmt)
        log.info("Convert: %s (%d bytes virtual) to raw", fmt, info.virtual_size)
        write_path = target.write_path
        cache_mode = "none" if request.cache_try_none and supports_direct_io(write_path) else "writeback"
        base = download_share * 100.0
        await self._qemu.convert(
            source, fmt, str(write_path), cache_mode=cache_mode, preallocate=request.preallocate,
            existing_target=target.block,
            on_progress=lambda p: self._progress.raise_to(base + p * (100.0 - base) / 100.0))
        return info.virtual_size

    def _resize(self, target: Target, virtual_size: int, request: ImportRequest) -> int:
        """Grow a Filesystem disk to the usable size (never shrink it) and check it still fits."""
        if target.block:
            return virtual_size
        size = virtual_size
        if request.image_size is not None:
            wanted = min(usable_space(request.overhead, target.available), request.image_size)
            if virtual_size < wanted:
                log.info("Resize: %d -> %d bytes", virtual_size, wanted)
                size = wanted
        if size > target.available:
            raise too_large(size, target.available)
        fd = os.open(target.write_path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            if request.preallocate:
                preallocate(fd, size)
            os.fsync(fd)
        except OSError as e:
            raise no_space_guard(e, str(target.disk_path)) from e
        finally:
            os.close(fd)
        return size


def _checkpoint_plan(stream: SourceStream, request: ImportRequest) -> CheckpointPlan | None:
    settings = request.checkpoints
    if settings is None:
        return None
    checkpointer = settings.checkpointer or Checkpointer(settings.store, every_bytes=settings.every_bytes,
                                                         every_seconds=settings.every_seconds)
    return CheckpointPlan(checkpointer, stream.identity, settings.source_resumable, settings.resume, settings.restart,
                          stream.restart_points)


def _keep_for_restart(error: BaseException, checkpoints: CheckpointPlan | None) -> bool:
    """A source that broke off after a checkpoint, or a stop (SIGTERM: the pod was deleted, evicted or
    its node drained, `importer.signals` cancels the import): the restarted pod continues from it."""
    if checkpoints is None:
        return False
    stopped = isinstance(error, asyncio.CancelledError)
    if not stopped and (not isinstance(error, ImportFailure) or not error.retryable):
        return False
    return checkpoints.checkpointer.saved > 0 or checkpoints.resume is not None
