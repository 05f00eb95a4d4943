"""The resume decision, as pure functions: what a (re)started importer found on its volume, and what
the source answered to a ranged request, turned into "resume at this checkpoint" or "start over,
because ...". `importer.main` observes (reads the record with `importer.checkpoint`, looks at the
partial disk, opens the source) and applies; tests check these tables directly.

Two steps, because the second needs the network: `decide` before anything is fetched (is there a
usable record at all, and can this importer's decoder continue inside the gzip member it names?),
`confirm` once the ranged request was answered (is it still the same source, and did it honour the
range?). The reason for starting over travels in the termination message
(`resumeDecision`, `resumeMessage`) so the controller records it as an event on the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from importer.archivestate import ArchiveState
from importer.checkpoint import Checkpoint, CheckpointCorrupt, SourceIdentity
from importer.compressedqcow2 import decoder_problem
from importer.gzipblocks import restart_problem

# Why a compressed stream had no restart point before the kill (its decoder restarts only at their ends).
_NO_BOUNDARY_YET = {
    "xz": " (an xz stream restarts at block ends, and single-threaded xz writes a single block)",
    "zst": " (a zstd stream restarts at frame ends, and the zstd tool writes one frame per file)",
}

# Uploads' identities (`importer.uploadserver.durable.upload_identity`) name no place to read from again.
UPLOAD_IDENTITY_PREFIX = "upload"


class Outcome(StrEnum):
    FRESH = "Fresh"  # nothing from an earlier attempt: nothing to say
    RESUMED = "Resumed"
    STARTED_OVER = "StartedOver"


@dataclass(frozen=True)
class Observed:
    record: Checkpoint | None
    unreadable: str | None  # why the record could not be read, if it could not
    partial_exists: bool
    checksum: str  # the checksum spec given to this attempt ("" for none)
    source_kind: str
    source_resumable: bool  # the source can make a ranged request
    hash_library: str  # importer.hashstate.library_version() ("" when unavailable)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    record: Checkpoint | None = None  # the checkpoint to resume from
    reason: str | None = None  # why it starts over

    @classmethod
    def over(cls, reason: str) -> Decision:
        return cls(Outcome.STARTED_OVER, reason=reason)


def decide(seen: Observed) -> Decision:
    record = seen.record
    if seen.unreadable is not None:
        return Decision.over(f"the checkpoint could not be read ({seen.unreadable})")
    if record is None:
        if seen.partial_exists:
            return Decision.over("the previous attempt stopped before it wrote a checkpoint")
        return Decision(Outcome.FRESH)
    if record.not_resumable is not None:
        return Decision.over(record.not_resumable)
    if record.wire_offset == 0:
        return Decision.over("the previous attempt stopped before its first checkpoint"
                             + _NO_BOUNDARY_YET.get(record.compression or "", ""))
    if not seen.partial_exists:
        return Decision.over("the partly written disk of the previous attempt is gone")
    if record.checksum != seen.checksum:
        return Decision.over("the checksum to verify is not the one the previous attempt verified")
    if seen.checksum and (record.hash_state is None or record.hash_library != seen.hash_library):
        return Decision.over(f"the checksum's hash state was saved by {record.hash_library or 'no library'} "
                             f"and this importer has {seen.hash_library or 'none that can continue it'}")
    if not seen.source_resumable:
        return Decision.over(f"the {seen.source_kind} source cannot continue from an offset")
    if record.archive_state and (why := _archive_mark_problem(record.archive_state)):
        return Decision.over(why)
    if record.format == "qcow2" and record.compression is not None and (why := decoder_problem(record)):
        return Decision.over(why)
    if record.format != "qcow2" and record.compression == "gz" and \
            (why := restart_problem(record.decoder_state, record.target_offset)):
        return Decision.over(why)
    return Decision(Outcome.RESUMED, record=record)


def confirm(record: Checkpoint, seen: SourceIdentity | None, start: int, offset: int | None = None) -> str | None:
    """Why the answer to the ranged request for bytes from `offset` (default: the record's wire offset)
    cannot continue `record` (None: it can)."""
    offset = record.wire_offset if offset is None else offset
    if seen is None:
        return "the source did not identify itself (no ETag, Last-Modified or digest)"
    if why := record.identity.differs(seen):
        return f"the source changed since the checkpoint: {why}"
    if start != offset:
        return (f"the source answered the request for bytes from {offset} with bytes from {start} "
                f"(it does not honour range requests)")
    return None


def _archive_mark_problem(archive_state: str) -> str | None:
    try:
        ArchiveState.from_json(archive_state)
    except CheckpointCorrupt as e:
        return f"the checkpoint's archive mark could not be read ({e})"
    return None


def describe(decision: Decision) -> str:
    """The sentence for the event and the log."""
    if decision.outcome is Outcome.RESUMED and decision.record is not None:
        record = decision.record
        of = f" of {record.identity.size}" if record.identity.size is not None else ""
        if record.archive_state:
            mark = ArchiveState.from_json(record.archive_state)  # `decide` resumes only a readable one
            done = f"{mark.members} archive members were already extracted"
        elif record.format == "qcow2":
            done = f"the disk's data already reached byte {record.target_offset}"
        else:
            done = f"{record.target_offset} bytes of the disk were already written"
        return f"Resumed the import after a restart at source byte {record.wire_offset}{of} ({done})"
    if decision.outcome is Outcome.STARTED_OVER:
        return f"Started the import over: {decision.reason}"
    return ""


def not_resumable_reason(fmt: str, compression: tuple[str, ...], archive: bool,
                         identity: SourceIdentity | None, source_resumable: bool, *,
                         ranges_kept: bool = False, ranged_reads: bool = True) -> str | None:
    """Why an import of this shape is not checkpointed (the record says so for the next attempt).
    `ranges_kept`: the bytes a qcow2 restart reads again are kept beside the record (an upload, or a
    compressed qcow2, onto a Filesystem volume or a Block volume with scratch, `importer.checkpointranges`),
    since an upload's client cannot be asked for them, nor a compressed image's source for decoded bytes.
    `ranged_reads`: the source can serve those bytes with ranged requests (a registry layer cannot)."""
    if archive and len(compression) > 1:  # else a tar is checkpointed as a raw image is (`importer.archive`)
        return "archives compressed more than once are not checkpointed"
    if not source_resumable:
        return "this source cannot continue from an offset"
    if identity is None:
        return ("the source did not show that it honours range requests for this object (Accept-Ranges, a "
                "Content-Length and no Content-Encoding)")
    if not identity.validated:
        return "the source has no ETag, Last-Modified or digest to show whether it changed"
    if fmt == "qcow2" and compression and not ranged_reads:
        return ("a compressed qcow2 disk inside a registry image is not checkpointed (the layer's restart points "
                "and the disk's decompressor's would have to line up)")
    if fmt == "qcow2" and len(compression) == 1 and not ranges_kept:
        return (f"a qcow2 image compressed with {compression[0]} is not checkpointed onto a Block volume whose pod "
                f"has no scratch volume (a restart reads the image's tables again, which the source can serve only "
                f"compressed; a Filesystem volume keeps them beside the checkpoint, a Block volume on scratch)")
    if fmt == "qcow2" and identity.url.startswith(UPLOAD_IDENTITY_PREFIX) and not ranges_kept:
        return ("a qcow2 upload onto a Block volume is converted while it streams, and a restart would need "
                "the image's tables again, which only the client has (a Filesystem volume keeps them beside "
                "the checkpoint)")
    if fmt == "qcow2" and not ranged_reads and not ranges_kept:
        return ("a qcow2 disk inside a registry image is not checkpointed onto a Block volume whose pod has no "
                "scratch volume (a restart reads the image's tables again, which a layer cannot serve by range; "
                "a Filesystem volume keeps them beside the checkpoint, a Block volume on scratch)")
    if fmt in ("vmdk", "vdi", "vpc", "vhdx"):
        return f"a {fmt} image is converted by qemu-img from scratch space"
    if len(compression) > 1:
        return "images compressed more than once are not checkpointed"
    return None
