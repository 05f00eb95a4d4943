"""Runs one upload through the importer's pipeline, exactly as an import (format detection,
decompression, conversion via scratch, validation, sizing, preallocation, commit-after-checks), and
maps the outcome to upstream's HTTP answers.

`Processor.start` returns a running `Processing`: its `validated` event fires when the image has
passed every check that precedes conversion (the pipeline calls qemu-img `convert` only after
`info`, the safety rules and `check`), or when the pipeline finished outright (raw, ISO, archives and
streamed qcow2 need no separate conversion). That is the moment upstream's async endpoints answer
200. Incomplete ISOs are refused before commit (`isocheck`).

Status mapping (upstream's `handleStreamError`, with its "everything is a capacity error" quirk
fixed): no capacity → 400 "effective image size is larger than the reported available storage"; any
other image or validation failure → 400; everything else → 500.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cdi.contracts.termination import TerminationMessage
from cdi.contracts.upload_protocol import UPLOAD_COMPLETE
from importer.blockio import is_block_device
from importer.checkpoint import RecordStore, SourceIdentity
from importer.errors import (
    ChecksumMismatch,
    ImageTooLarge,
    ImportFailure,
    InvalidImage,
    NoSpace,
    UnsafeArchive,
    UnsafeImage,
)
from importer.main import checkpoint_store
from importer.pipeline import CheckpointSettings, ImportOutcome, ImportRequest, Pipeline
from importer.progress import Progress
from importer.qemu import ImageInfo, QemuImg
from importer.resume import Decision
from importer.sources.base import SourceStream
from importer.target import Target, discover_target
from importer.transfer import ScratchSpaceRequired
from importer.uploadserver.config import UploadServerConfig
from importer.uploadserver.durable import describe_upload
from importer.uploadserver.gate import ServerResult, UploadGate
from importer.uploadserver.isocheck import IsoProbe

_CAPACITY = (ImageTooLarge, NoSpace)
_REFUSED = (InvalidImage, UnsafeImage, UnsafeArchive, ChecksumMismatch)


@dataclass(frozen=True)
class VerifiedTarget(Target):
    """A target that runs one more check on the finished disk before making it visible."""

    verify: Callable[[Path], None] = field(default=lambda _path: None, compare=False)

    def commit(self) -> None:
        self.verify(self.write_path)
        super().commit()


class SignallingQemu(QemuImg):
    """Delegates to the real qemu-img; reaching `convert` means the image passed validation."""

    def __init__(self, inner: QemuImg, validated: asyncio.Event) -> None:
        self._inner = inner
        self._validated = validated

    async def info(self, path: str, fmt: str) -> ImageInfo:
        return await self._inner.info(path, fmt)

    async def check(self, path: str, fmt: str) -> None:
        await self._inner.check(path, fmt)

    async def convert(self, src: str, fmt: str, dst: str, *, cache_mode: str, preallocate: bool,
                      existing_target: bool, on_progress: Callable[[float], None]) -> None:
        self._validated.set()
        await self._inner.convert(src, fmt, dst, cache_mode=cache_mode, preallocate=preallocate,
                                  existing_target=existing_target, on_progress=on_progress)


@dataclass
class Processing:
    task: asyncio.Task[ImportOutcome]
    validated: asyncio.Event
    acknowledged: bool = False  # a client was told 200 before the pipeline ended (async semantics)
    resume_note: Decision | None = None  # what became of an earlier server's upload (UploadResumed/StartedOver)
    resume_text: str = ""  # its sentence, when the upload server says more than `describe_upload(resume_note)`

    async def until_validated(self) -> None:
        """Wait until the image passed validation or the pipeline ended (check `task` for which)."""
        waiter = asyncio.ensure_future(self.validated.wait())
        try:
            await asyncio.wait({waiter, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()


class Processor:
    def __init__(self, config: UploadServerConfig, qemu: QemuImg, progress: Progress) -> None:
        self._config = config
        self._qemu = qemu
        self._progress = progress

    def target(self, *, keep_partial: bool = False) -> Target:
        return discover_target(self._config.data_path, self._config.image_size, keep_partial=keep_partial)

    def record_store(self) -> tuple[RecordStore, bool] | None:
        """Where this volume keeps an upload's checkpoint, and whether a partial disk is there (None: a
        Block volume too small for records)."""
        found = checkpoint_store(self._config.data_path, self._config.scratch_path)
        if found is None:
            return None
        store, partial = found
        return store, True if partial is None else partial

    @property
    def block_target(self) -> bool:
        return is_block_device(self._config.data_path)

    def start(self, chunks: AsyncIterator[bytes], *, archive: bool, total: int | None,
              description: str, checkpoints: CheckpointSettings | None = None,
              identity: SourceIdentity | None = None) -> Processing:
        """Run the pipeline on `chunks`; with `checkpoints` (resumable uploads) it records how far the
        disk is consistent, and with `checkpoints.resume` it continues that record's partial disk
        (`chunks` then start at its offset)."""
        probe = IsoProbe()
        resume = checkpoints.resume if checkpoints is not None else None
        plain = self.target(keep_partial=resume is not None)
        target = VerifiedTarget(plain.data_path, plain.block, plain.available, verify=probe.verify)
        request = ImportRequest(target=target, scratch_dir=self._config.scratch_path, archive=archive,
                                image_size=self._config.image_size, overhead=self._config.filesystem_overhead,
                                preallocate=self._config.preallocation, checksum=None, checkpoints=checkpoints)
        validated = asyncio.Event()
        # a resumed stream does not start with the image's header: the ISO probe has nothing to see
        tapped = probe.tap(chunks) if resume is None else chunks
        stream = SourceStream(tapped, total, description, identity=identity,
                              start=resume.wire_offset if resume is not None else 0)
        pipeline = Pipeline(SignallingQemu(self._qemu, validated), self._progress)
        return Processing(asyncio.create_task(pipeline.run(stream, request)), validated)


def is_capacity_error(error: BaseException) -> bool:
    return isinstance(error, _CAPACITY) or (isinstance(error, OSError) and error.errno in (errno.ENOSPC,
                                                                                             errno.EDQUOT))


def describe(error: BaseException) -> str:
    if isinstance(error, ImportFailure):
        return error.message
    if isinstance(error, ScratchSpaceRequired):
        return f"{error}: the upload pod has no scratch space"
    return f"{type(error).__name__}: {error}"


def http_failure(error: BaseException) -> tuple[int, str]:
    """Upstream's status and body for a failed upload."""
    if is_capacity_error(error):
        return 400, ("Saving stream failed: effective image size is larger than the reported available "
                     f"storage: {describe(error)}")
    if isinstance(error, _REFUSED):
        return 400, f"Saving stream failed: {describe(error)}"
    return 500, f"Saving stream failed: {describe(error)}"


def failure_reason(error: BaseException) -> tuple[str, bool]:
    """The machine-readable reason and retryable flag for the termination message."""
    if isinstance(error, ImportFailure):
        return error.reason, error.retryable
    if is_capacity_error(error):
        return NoSpace.reason, False
    return ImportFailure.reason, False


def _stamp(processing: Processing, message: TerminationMessage) -> TerminationMessage:
    """Add what became of an earlier server's upload, as the importer does for its restarts."""
    note = processing.resume_note
    if note is None:
        return message
    return replace(message, resume_decision=note.outcome.value,
                   resume_message=processing.resume_text or describe_upload(note))


def settle(gate: UploadGate, processing: Processing) -> None:
    """What the end of a pipeline means for the server. Success finishes it (exit 0, upstream's
    "Upload Complete"). A failure after a client was already told 200 (async) is fatal: exit 1 with
    the reason, as upstream. Any other failure was answered to the client, so the gate reopens for a retry."""

    def done(task: asyncio.Task[ImportOutcome]) -> None:
        error = None if task.cancelled() else task.exception()
        if task.cancelled() or (error is not None and not processing.acknowledged):
            gate.release()
        elif error is None:
            gate.finish(ServerResult(0, _stamp(processing, TerminationMessage(
                message=UPLOAD_COMPLETE, preallocation_applied=task.result().preallocation_applied))))
        else:
            reason, retryable = failure_reason(error)
            gate.finish(ServerResult(1, _stamp(processing, TerminationMessage(
                message=f"Unable to process data: {describe(error)}", reason=reason, retryable=retryable))))

    processing.task.add_done_callback(done)
