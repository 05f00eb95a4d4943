"""Import checkpoints: how far a partly written target is consistent, so a restarted importer pod
continues there instead of starting over.

A record says: which source (identity: URL, ETag, Last-Modified, size, digest), how many of its bytes
were consumed and hashed (`wire_offset`), how many decoded bytes are on the target and synced
(`target_offset`; for qcow2, whose guest data arrives in host order, how far the synced data
reaches), the wire bytes read past the decoder's restart point (`carry`: a gzip member, xz block or
zstd frame ends inside a read, so the bytes after it are kept here rather than hashed twice), what
the decoder needs to restart there (`decoder_state`: a gzip member's window, unused bits, CRC-32 and
length; an xz stream's header and the blocks seen so far, for its index; for qcow2, where the
metadata lies that the restart reads again), the format,
the compression layer, and the checksum's hash state (`importer.hashstate`). A compressed qcow2 record
(qcow2.gz, .xz, .zst) has the decompressor's restart point's offsets, carry and hash state, and in
`decoder_state` both the decompressor's and the converter's state (`importer.compressedqcow2`). A
record whose import cannot be resumed (nested compression, no validators) still says so in
`not_resumable`, so the next attempt can tell the user why it starts over. A source that restarts
from its own saved state rather than from an offset alone (a registry layer: the blob offset, gzip
state and blob hash of a point at or before `wire_offset`; `importer.sources.registry.restart`) has it
in `source_state`, opaque here (about 33 KiB with a gzip window, so a record still fits a device slot).
An archive extraction's record (content type `archive`, Filesystem volumes only) also has the tar
stream's mark in `archive_state` (`importer.archivecheckpoint`): its `target_offset` is then the
decoded tar stream's offset, and the partly extracted files are in the staging directory.

Order and atomicity (who calls: `importer.transfer` through `Checkpointer`): the target's data is
written and fsynced first, then the record is written to a temporary file, fsynced, renamed over the
old record, and the directory fsynced. A kill at any point leaves either the old record (whose
offsets are still covered by synced data: later writes only add to them) or the new one.

Where it lives: on the volume itself, so it survives a pod restart (embedded: the same directory or
device is mapped again; Kubernetes: the PVC is mounted again). Filesystem volumes: beside the partial
disk, `.disk.img.checkpoint` in the volume's directory (`CheckpointStore`). Block volumes have no
file system: two alternating slots in the device's last MiB (`importer.checkpointdevice`). The
upload server shares `importer.target`, which removes a stale record with the partial disk, except
that its resumable uploads keep records too, one per chunk (`importer.uploadserver.durable`); a qcow2
upload also keeps the image ranges its restart reads again beside the record (`Checkpointer.ranges`,
`importer.checkpointranges`), which `CheckpointStore.clear` removes with it. The resume decision is
`importer.resume`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from importer.checkpointranges import RangeStore

CHECKPOINT_NAME = ".disk.img.checkpoint"
RANGES_SUFFIX = ".ranges"  # an upload's kept qcow2 ranges beside the record (`importer.checkpointranges`)
TAIL_SUFFIXES = (".tail.0", ".tail.1")  # a compressed upload's kept wire bytes (`importer.uploadserver.wiretail`)
VERSION = 1


class CheckpointCorrupt(ValueError):
    """A record that cannot be read (torn by something other than us, or from another version)."""


@dataclass(frozen=True)
class SourceIdentity:
    """What tells one version of a source from another."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    digest: str | None = None  # a content digest the server keeps (GCS md5, a registry blob digest)
    version: str | None = None  # an object version (S3 VersionId, GCS generation)

    @property
    def validated(self) -> bool:
        """Whether a change of the source's content would show (a size alone would not)."""
        return bool(self.etag or self.last_modified or self.digest or self.version)

    def differs(self, other: SourceIdentity) -> str | None:
        """Why `other` (seen now) is not the source this record was made from, or None."""
        for name in ("url", "etag", "last_modified", "size", "digest", "version"):
            before, now = getattr(self, name), getattr(other, name)
            if before is not None and before != now:
                return f"its {name.replace('_', '-')} changed from {before!r} to {now!r}"
        return None


@dataclass(frozen=True)
class Checkpoint:
    identity: SourceIdentity
    format: str  # "raw" ("iso" is raw too) or "qcow2"
    compression: str | None  # "gz", "xz", "zst", or None
    checksum: str = ""  # the spec as given (algo:hex): another checksum means another import
    wire_offset: int = 0
    target_offset: int = 0
    carry: bytes = b""
    decoder_state: bytes = b""  # what a decoder restarting there needs (gzip window; xz blocks; qcow2 tables' place)
    hash_state: bytes | None = None
    hash_library: str = ""
    not_resumable: str | None = None
    source_state: bytes = b""  # the source's own restart point at or before wire_offset (registry layers)
    archive_state: str = ""  # an archive extraction's mark (JSON, `importer.archivestate.ArchiveState`)
    version: int = field(default=VERSION)

    def advanced(self, wire_offset: int, target_offset: int, carry: bytes, hash_state: bytes | None,
                 decoder_state: bytes = b"", source_state: bytes = b"", archive_state: str = "") -> Checkpoint:
        return replace(self, wire_offset=wire_offset, target_offset=target_offset, carry=carry, hash_state=hash_state,
                       decoder_state=decoder_state, source_state=source_state, archive_state=archive_state)

    def to_json(self) -> str:
        doc: dict[str, Any] = asdict(self)
        doc["carry"] = base64.b64encode(self.carry).decode()
        doc["decoder_state"] = base64.b64encode(self.decoder_state).decode()
        doc["source_state"] = base64.b64encode(self.source_state).decode()
        doc["hash_state"] = base64.b64encode(self.hash_state).decode() if self.hash_state is not None else None
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            doc = json.loads(text)
            if doc.get("version") != VERSION:
                raise CheckpointCorrupt(f"checkpoint version {doc.get('version')!r}, expected {VERSION}")
            identity = SourceIdentity(**doc.pop("identity"))
            carry = base64.b64decode(doc.pop("carry"), validate=True)
            decoder_state = base64.b64decode(doc.pop("decoder_state", ""), validate=True)
            source_state = base64.b64decode(doc.pop("source_state", ""), validate=True)
            state = doc.pop("hash_state")
            record = cls(identity=identity, carry=carry, decoder_state=decoder_state, source_state=source_state,
                         hash_state=base64.b64decode(state, validate=True) if state is not None else None, **doc)
        except CheckpointCorrupt:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CheckpointCorrupt(f"unreadable checkpoint: {type(e).__name__}: {e}") from e
        _check_types(record)
        return record


def _check_types(record: Checkpoint) -> None:
    ints = (record.wire_offset, record.target_offset)
    if not all(isinstance(n, int) and n >= 0 for n in ints) or not isinstance(record.format, str):
        raise CheckpointCorrupt("unreadable checkpoint: offsets must be non-negative integers")


class RecordStore(Protocol):
    """Where an import's record is kept (a file, or slots on a block device)."""

    def load(self) -> Checkpoint | None: ...

    def save(self, record: Checkpoint) -> bool:
        """Keep `record` durably; False when this store cannot hold it (and kept nothing)."""
        ...

    def clear(self, data_end: int | None = None) -> None:
        """Forget the record; `data_end`: where the imported disk ends (a device keeps what is past it)."""
        ...

    @property
    def data_limit(self) -> int | None:
        """Disk bytes at or past this offset would overwrite records (None: records live elsewhere)."""
        ...


class CheckpointStore:
    """One record in a file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, data_dir: Path) -> CheckpointStore:
        return cls(data_dir / CHECKPOINT_NAME)

    def load(self) -> Checkpoint | None:
        """The last record, None when there is none; raises CheckpointCorrupt for a broken one."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointCorrupt(f"unreadable checkpoint: {e}") from e
        return Checkpoint.from_json(text)

    def save(self, record: Checkpoint) -> bool:
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, record.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True

    @property
    def data_limit(self) -> int | None:
        return None

    def clear(self, data_end: int | None = None) -> None:
        """Forget the record, and the qcow2 ranges and compressed bytes an upload kept beside it."""
        for name in (self.path.name, self.path.name + ".tmp", self.path.name + RANGES_SUFFIX,
                     self.path.name + RANGES_SUFFIX + ".tmp", *(self.path.name + s for s in TAIL_SUFFIXES)):
            self.path.with_name(name).unlink(missing_ok=True)


class Checkpointer:
    """When to checkpoint and what was saved, for one attempt (transfer thread). A record is due every
    `every_bytes` source bytes or `every_seconds`, whichever comes first; the caller then looks for a
    restart point (a member boundary in a compressed stream), syncs the target and calls `save`."""

    def __init__(self, store: RecordStore, *, every_bytes: int, every_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._every_bytes = every_bytes
        self._every_seconds = every_seconds
        self._clock = clock
        self._base: Checkpoint | None = None
        self._last_wire = 0
        self._last_time = 0.0
        self.saved = 0
        self.seconds = 0.0  # spent syncing and writing records
        self._stopped = False
        self.ranges: RangeStore | None = None  # a qcow2 upload's kept ranges (imports read them from the source)
        # where a compressed qcow2 import keeps them (its source serves compressed bytes, not the image's)
        self.decoded_ranges: RangeStore | None = None
        self.source_state = b""  # the source's restart point for the next record (`importer.checkpointing`)
        self.archive_state = ""  # an archive extraction's mark for the next record (`importer.archivecheckpoint`)

    @property
    def active(self) -> bool:
        return self._base is not None and self._base.not_resumable is None and not self._stopped

    def begin(self, base: Checkpoint) -> None:
        """Record what this attempt imports (and, for a shape that cannot resume, why not)."""
        self._base = base
        self._last_wire, self._last_time = base.wire_offset, self._clock()
        self.store.save(base)

    @property
    def every_bytes(self) -> int:
        return self._every_bytes

    @property
    def last_wire(self) -> int:
        """The source offset of the last record (or of the start of this attempt)."""
        return self._last_wire

    def since_last(self, wire_offset: int) -> int:
        return wire_offset - self._last_wire

    def retire(self) -> None:
        """No more records in this attempt, and forget the last one (its place is about to be overwritten)."""
        self._stopped = True
        self.store.clear()

    def due(self, wire_offset: int) -> bool:
        if not self.active:
            return False
        return (wire_offset - self._last_wire >= self._every_bytes
                or (wire_offset > self._last_wire and self._clock() - self._last_time >= self._every_seconds))

    def save(self, wire_offset: int, target_offset: int, carry: bytes, hash_state: bytes | None,
             started: float, decoder_state: bytes = b"") -> None:
        """`started`: the clock when the caller began syncing the target (counted in `seconds`)."""
        assert self._base is not None
        kept = self.store.save(self._base.advanced(wire_offset, target_offset, carry, hash_state, decoder_state,
                                                   self.source_state, self.archive_state))
        now = self._clock()
        self.saved += kept
        self._stopped = not kept  # the store is full (a device's data reached its slots): no more syncs
        self.seconds += now - started
        self._last_wire, self._last_time = wire_offset, now

    def skip(self, wire_offset: int) -> None:
        """A record was due at `wire_offset` and none could be taken there (the caller logged why)."""

    def now(self) -> float:
        return self._clock()
