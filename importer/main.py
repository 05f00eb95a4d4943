"""`cdi-importer`: upstream's importer pod entrypoint. Reads the env-var contract, imports into the
data path, serves progress, writes the termination message and exits with upstream's codes:
0 on success (and, as upstream, when scratch space is required or a checksum mismatched, both with a
JSON message the controller acts on), 1 on any other failure. `run` builds the real object graph;
everything below it takes its collaborators as arguments.

Before it reads the source, an importer looks for an earlier attempt's checkpoint on its volume
(`importer.checkpoint` beside the partial disk, `importer.checkpointdevice` at a Block volume's
end), decides with `importer.resume` whether to continue it, asks the source for the rest (`open_at`)
and confirms the answer (a qcow2 record first has the image's tables read again, to rebuild the
converter's state: `qcow2_restart`; a registry source continues the restart point the record keeps,
`RestartableSource.open_from`, and a qcow2 record of one rebuilds the converter from the image ranges
kept beside the record, `importer.checkpointranges`, as uploads do: a layer cannot serve ranges; so
does a compressed qcow2 record, whose source serves only compressed bytes: `importer.compressedqcow2`);
whichever way it goes, the decision and its reason go into the
termination message (`resumeDecision`) for the controller's event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.contracts.termination import IMPORT_COMPLETE, TerminationMessage
from importer import hashstate, ranged
from importer.allocator import keep_freed_memory
from importer.archive import STAGING_NAME
from importer.blank import create_blank
from importer.blockio import device_size, is_block_device
from importer.checkpoint import Checkpoint, CheckpointCorrupt, Checkpointer, CheckpointStore, RecordStore
from importer.checkpointdevice import DEVICE_RANGES_NAME, DeviceTailStore
from importer.checkpointranges import LocalRanges, RangeStore
from importer.checkpointrestart import SourceRanges, rebuild
from importer.checksum import parse_checksum
from importer.config import ImporterConfig, load_config
from importer.errors import ChecksumMismatch, ConfigurationError, ImportFailure, NoSpace
from importer.metrics import MetricsServer
from importer.pipeline import CheckpointSettings, ImportOutcome, ImportRequest, Pipeline
from importer.progress import Progress
from importer.qcow2stream.restart import Restart
from importer.qemu import QemuImg
from importer.ranged import RangedAccess
from importer.resume import Decision, Observed, Outcome, confirm, decide, describe
from importer.signals import run_main
from importer.sources import Source, SourceStream, source_factory
from importer.sources.base import RestartableSource, ResumableSource
from importer.target import PARTIAL_NAME, discover_target
from importer.transfer import ScratchSpaceRequired

log = logging.getLogger("importer")
PROGRESS_INTERVAL = 1.0


def write_termination(path: Path, message: TerminationMessage) -> None:
    try:
        path.write_text(message.to_json())
        os.chmod(path, 0o600)
    except OSError as e:
        log.error("could not write termination message to %s: %s", path, e)


@dataclass
class Attempt:
    """What this attempt decided about an earlier one (for the termination message, even on failure);
    `restart`: a qcow2 record's converter state, rebuilt from the image's metadata."""

    decision: Decision = field(default_factory=lambda: Decision(Outcome.FRESH))
    restart: Restart | None = None

    def stamp(self, message: TerminationMessage) -> TerminationMessage:
        if self.decision.outcome is Outcome.FRESH:
            return message
        return replace(message, resume_decision=self.decision.outcome.value, resume_message=describe(self.decision))


def failure_message(error: ImportFailure, attempt: Attempt | None = None) -> TerminationMessage:
    """Upstream's wording: configuration and connection errors as they are, the rest prefixed."""
    text = error.message
    if not isinstance(error, ConfigurationError) and not text.startswith("Unable to"):
        text = f"Unable to process data: {text}"
    message = TerminationMessage(message=text, reason=error.reason, retryable=error.retryable)
    return attempt.stamp(message) if attempt else message


def checkpoint_store(data: Path, ranges_dir: Path | None = None) -> tuple[RecordStore, bool | None] | None:
    """Where this volume keeps records, and whether an earlier attempt's disk is there to continue
    (None: a device always is, so the record alone says whether there was an earlier attempt).
    `ranges_dir`: where a Block volume's upload keeps a qcow2 image's ranges (the upload pod's scratch)."""
    if is_block_device(data):
        ranges = ranges_dir / DEVICE_RANGES_NAME if ranges_dir is not None else None
        store = DeviceTailStore(data, device_size(data), ranges)
        return (store, None) if store.usable else None
    if data.is_dir():
        return CheckpointStore.beside(data), (data / PARTIAL_NAME).is_file() or (data / STAGING_NAME).is_dir()
    return None


def observe_earlier_attempt(config: ImporterConfig, source: Source) -> tuple[Decision, CheckpointSettings | None]:
    """Read what an earlier attempt left on the volume and decide whether to continue it. Imports with
    checkpoints switched off (and Block volumes under 4 MiB) are never checkpointed."""
    restartable = isinstance(source, RestartableSource)
    resumable = isinstance(source, (ResumableSource, RestartableSource))
    scratch = config.scratch_path if resumable and config.scratch_path and config.scratch_path.is_dir() else None
    found = checkpoint_store(config.data_path, scratch) if config.checkpoint_interval else None
    if found is None:
        return Decision(Outcome.FRESH), None
    store, partial_exists = found
    record, unreadable = None, None
    try:
        record = store.load()
    except CheckpointCorrupt as e:
        unreadable = str(e)
    partial = partial_exists if partial_exists is not None else record is not None
    checksum = parse_checksum(config.checksum)
    decision = decide(Observed(record, unreadable, partial, checksum.text if checksum else "",
                               source.kind, resumable, hashstate.library_version()))
    checkpointer = None
    if resumable:
        checkpointer = Checkpointer(store, every_bytes=config.checkpoint_interval,
                                    every_seconds=config.checkpoint_seconds)
        if restartable:  # its qcow2 ranges cannot be read again from the source: keep them beside the record
            checkpointer.ranges = kept_ranges(store)
        else:  # nor can a compressed qcow2's, whose source serves only the compressed bytes
            checkpointer.decoded_ranges = kept_ranges(store)
    return decision, CheckpointSettings(store, config.checkpoint_interval, config.checkpoint_seconds, resumable,
                                        checkpointer=checkpointer)


def kept_ranges(store: RecordStore) -> RangeStore | None:
    """Where a qcow2 import whose source cannot serve ranges keeps those its restart reads: beside a
    Filesystem volume's record, on the pod's scratch volume for a Block volume (None: it has none)."""
    if isinstance(store, CheckpointStore):
        return RangeStore.beside(store.path)
    if isinstance(store, DeviceTailStore) and store.ranges_path is not None:
        return RangeStore(store.ranges_path)
    return None


@contextlib.asynccontextmanager
async def open_source(source: Source, attempt: Attempt, ranges: RangeStore | None = None
                      ) -> AsyncIterator[SourceStream]:
    """The source from the checkpoint on when the decision is to resume and the source confirms it is
    unchanged and honours the range; otherwise from the start, with the reason in `attempt`. `ranges`:
    the qcow2 ranges kept beside the record (a source that cannot serve ranges)."""
    record = attempt.decision.record
    if attempt.decision.outcome is Outcome.RESUMED and record is not None and isinstance(source, RestartableSource) \
            and record.format == "qcow2":
        attempt.restart, why = await rebuild(record, LocalRanges(ranges)) if ranges is not None else \
            (None, "the image's tables were not kept beside the checkpoint")
        if why is not None:
            attempt.decision = Decision.over(why)
    if attempt.decision.outcome is Outcome.RESUMED and record is not None and isinstance(source, ResumableSource) \
            and record.format == "qcow2":
        attempt.restart, why = await qcow2_restart(source, record, ranges)
        if why is not None:
            attempt.decision = Decision.over(why)
    record = attempt.decision.record
    if attempt.decision.outcome is Outcome.RESUMED and record is not None and \
            isinstance(source, (ResumableSource, RestartableSource)):
        opened = (source.open_from(record.wire_offset, record.identity, record.source_state)
                  if isinstance(source, RestartableSource) else source.open_at(record.wire_offset, record.identity))
        async with opened as stream:
            why = stream.started_over or confirm(record, stream.identity, stream.start)
            if why is None or stream.start == 0:  # a whole answer is as good as a fresh request
                if why is not None:
                    attempt.decision = Decision.over(why)
                _log_decision(attempt.decision)
                yield stream
                return
        attempt.decision = Decision.over(why)
    _log_decision(attempt.decision)
    async with source.open() as stream:
        yield stream


async def qcow2_restart(source: ResumableSource, record: Checkpoint,
                        ranges: RangeStore | None = None) -> tuple[Restart | None, str | None]:
    """Read again the metadata a qcow2 record names (ranged requests pinned to the recorded version of
    the source; for a compressed qcow2, from the `ranges` kept beside the record, as the source serves
    only compressed bytes) and rebuild the converter's state at the checkpoint; or why it cannot
    continue. The rebuild is the one the upload server uses with its own kept ranges
    (`importer.checkpointrestart`)."""
    if record.compression is None:
        return await rebuild(record, SourceRanges(source, record))
    if ranges is None:
        return None, "the image's tables were not kept beside the checkpoint"
    return await rebuild(record, LocalRanges(ranges))


def _log_decision(decision: Decision) -> None:
    if decision.outcome is not Outcome.FRESH:
        log.info("%s", describe(decision))


def build_request(config: ImporterConfig, *, keep_partial: bool = False) -> ImportRequest:
    return ImportRequest(
        target=discover_target(config.data_path, config.image_size, keep_partial=keep_partial),
        scratch_dir=config.scratch_path,
        archive=config.content_type == env.CONTENT_ARCHIVE,
        image_size=config.image_size,
        overhead=config.filesystem_overhead,
        preallocate=config.preallocation,
        checksum=parse_checksum(config.checksum),
        cache_try_none=config.cache_mode_try_none,
    )


async def execute(config: ImporterConfig, progress: Progress, qemu: QemuImg,
                  attempt: Attempt | None = None) -> tuple[ImportOutcome, dict[str, str]]:
    """Run the import; returns its outcome and the labels the source found (registry image env)."""
    attempt = attempt or Attempt()
    if config.source == env.SOURCE_NONE:
        request = build_request(config)
        if request.target.block and request.archive:
            raise ConfigurationError("content type archive needs a Filesystem volume, not a Block volume")
        return await asyncio.to_thread(create_blank, request), {}
    factory = source_factory(config.source)
    if factory is None:
        raise ConfigurationError(f"Unknown data source: {config.source} (not supported by this importer yet)")
    source = factory(config)
    attempt.decision, settings = observe_earlier_attempt(config, source)
    request = build_request(config, keep_partial=attempt.decision.outcome is Outcome.RESUMED)
    if request.target.block and request.archive:
        raise ConfigurationError("content type archive needs a Filesystem volume, not a Block volume")
    pipeline = Pipeline(qemu, progress)
    try:
        checkpointer = settings.checkpointer if settings is not None else None
        ranges = (checkpointer.ranges or checkpointer.decoded_ranges) if checkpointer is not None else None
        async with open_source(source, attempt, ranges) as stream:
            resume = attempt.decision.record if attempt.decision.outcome is Outcome.RESUMED else None
            restart = attempt.restart if resume is not None else None
            checkpoints = replace(settings, resume=resume, restart=restart) if settings else None
            request = replace(request, checkpoints=checkpoints)
            return await pipeline.run(stream, request), dict(stream.labels)
    except ScratchSpaceRequired as e:
        access = getattr(source, "ranged_access", None)
        if e.fmt is None or source.kind != env.SOURCE_HTTP:
            raise
        why_not = ("the server does not honour range requests" if not isinstance(access, RangedAccess) else
                   "a checksum can only be verified on a download" if request.checksum is not None else
                   "nbdkit is not installed" if not ranged.available() else None)
        if why_not is not None:
            raise ScratchSpaceRequired(e.image, f"{e.reason}, and it cannot be read in place: {why_not}") from e
        assert isinstance(access, RangedAccess)  # why_not says so otherwise
        log.info("%s; the server honours range requests, so it is read in place instead", e)
        async with ranged.nbd_export(access) as uri:
            return await pipeline.run_in_place(uri, e.fmt, request), {}


async def _report_progress(progress: Progress) -> None:
    last = -1.0
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        progress.write_file()
        if progress.percent != last:
            last = progress.percent
            log.info("progress %.2f%%", last)


async def run(environ: Mapping[str, str], qemu: QemuImg | None = None) -> int:
    termination_log = Path(environ.get(env.TERMINATION_LOG, env.DEFAULT_TERMINATION_LOG))
    try:
        config = load_config(environ)
    except ConfigurationError as e:
        write_termination(termination_log, failure_message(e))
        log.error("%s", e.message)
        return 1
    progress = Progress(config.progress_file)
    metrics = MetricsServer(progress, config.owner_uid, config.metrics_addr)
    serving = await metrics.start_beside()
    reporter = asyncio.create_task(_report_progress(progress))
    attempt = Attempt()
    try:
        outcome, labels = await execute(config, progress, qemu or QemuImg(), attempt)
    except ScratchSpaceRequired as e:
        log.info("scratch space required: %s", e)
        # Upstream's controller acts on the flag; the message says why, so the DataVolume can show it.
        write_termination(config.termination_log, TerminationMessage(
            message=f"scratch space required and none found: {e}", scratch_space_required=True,
            preallocation_applied=False))
        return 0
    except ImportFailure as e:
        log.error("%s", e.message)
        write_termination(config.termination_log, failure_message(e, attempt))
        return 0 if isinstance(e, ChecksumMismatch) else 1
    except OSError as e:
        failure = NoSpace(str(e)) if e.errno in (28, 122) else ImportFailure(f"{type(e).__name__}: {e}")
        log.error("%s", failure.message)
        write_termination(config.termination_log, failure_message(failure, attempt))
        return 1
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        progress.write_file()
        await serving
        await metrics.stop()
    blank = config.source == env.SOURCE_NONE  # upstream's blank message has no scratchSpaceRequired key
    write_termination(config.termination_log, attempt.stamp(TerminationMessage(
        message=IMPORT_COMPLETE, scratch_space_required=None if blank else False,
        preallocation_applied=outcome.preallocation_applied, labels=labels)))
    log.info("Import Complete (%s, %d bytes)", outcome.detected, outcome.virtual_size)
    return 0


def main() -> None:
    keep_freed_memory()  # the data path's short-lived buffers reuse freed pages (importer.allocator)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_main(run(os.environ)))


if __name__ == "__main__":
    main()
