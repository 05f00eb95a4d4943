"""Integrity for the object-store sources (`importer.sources.s3`, `importer.sources.gcs`): the digest
the store keeps for an object, and a stream wrapper that hashes the bytes as they are yielded and
refuses them at the end if they disagree.

Each source picks at most one stored digest it can recompute over the wire bytes (S3: a full-object
`x-amz-checksum-*` or a single-part ETag; GCS: `md5Hash` or `crc32c`). The user's own checksum
(IMPORTER_CHECKSUM) is checked independently by the pipeline (`importer.transfer`); upstream's API has
a checksum field for http sources only, so for s3/gcs DataVolumes it is given as the annotation
`cdi.kubevirt.io/storage.import.checksum: <algo>:<hex>`, which the claim inherits. An object
with no usable stored digest is still protected when the user gave one; the sources say in the log
which of the two protects an import. A mismatch is `ChecksumMismatch`: fatal, never retried, and,
because it is raised from the stream before the pipeline commits, it leaves no imported disk. When
the pipeline gives up before the end of the stream (a tampered gzip stream fails to decompress
first), the rest of the object is read, if it is small enough, so that the digest names the cause.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from importer.checkpoint import SourceIdentity
from importer.errors import (
    ChecksumMismatch,
    ConfigurationError,
    ImportFailure,
    NoSpace,
    SourceUnavailable,
    TransferInterrupted,
)
from importer.sources.base import SourceStream

log = logging.getLogger(__name__)

SETTLE_LIMIT = 256 << 20  # bytes we read past a failure to tell corruption from a bad image
DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "crc32": 4, "crc32c": 4}


class Crc32:
    """zlib's CRC-32 (the one S3 calls CRC32) with a hashlib-like face; big-endian digest as S3 sends."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class DigestHasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


def _crc32c_factory() -> Callable[[], DigestHasher] | None:
    """CRC-32C through google-crc32c's C extension when it is installed. Its pure-Python fallback is
    far too slow for disk images, so without the extension CRC-32C counts as unverifiable."""
    try:
        import google_crc32c
    except ImportError:
        return None
    if google_crc32c.implementation != "c":
        return None
    return google_crc32c.Checksum


def hasher_factory(algorithm: str) -> Callable[[], DigestHasher] | None:
    """A new-hasher function for `algorithm`, or None when this importer cannot compute it fast."""
    if algorithm in ("md5", "sha1", "sha256"):
        return lambda: hashlib.new(algorithm)
    if algorithm == "crc32":
        return Crc32
    if algorithm == "crc32c":
        return _crc32c_factory()
    return None


def decode_digest(algorithm: str, encoded: str) -> bytes | None:
    """A base64 digest as object stores send them, or None if it is not one of the right length."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == DIGEST_SIZES.get(algorithm) else None


@dataclass(frozen=True)
class StoredDigest:
    """A digest the object store keeps for an object, and where it came from (for messages)."""

    algorithm: str
    expected: bytes
    origin: str  # "the ETag", "x-amz-checksum-sha256", "GCS md5Hash", ...

    def new_hasher(self) -> DigestHasher:
        factory = hasher_factory(self.algorithm)
        if factory is None:
            raise ValueError(f"no fast implementation of {self.algorithm}")
        return factory()

    def verify(self, seen: bytes, what: str) -> None:
        if seen != self.expected:
            raise ChecksumMismatch(
                f"checksum mismatch: expected {self.algorithm}:{self.expected.hex()}, calculated "
                f"{self.algorithm}:{seen.hex()} ({self.origin} of {what}; the object's bytes do not match "
                f"the digest the object store keeps for it)")


def computable(algorithm: str) -> bool:
    return hasher_factory(algorithm) is not None


class CheckedStream:
    """An object's bytes, hashed as they are yielded and, at their end, verified against the digest
    the store keeps (when there is one we can compute): a mismatch raises ChecksumMismatch."""

    def __init__(self, raw: AsyncIterator[bytes], digest: StoredDigest | None, what: str,
                 total: int | None = None) -> None:
        self._raw = raw
        self._digest = digest
        self._hasher = digest.new_hasher() if digest else None
        self._what = what
        self._total = total
        self._count = 0
        self._reading = False  # True while a read is pending: if it was cancelled, the rest is unknowable
        self._done = False
        self._mismatch: ChecksumMismatch | None = None  # found at the end, even if nobody read that far

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            self._reading = True
            try:
                chunk = await anext(self._raw)
            except StopAsyncIteration:
                self._reading = False
                break
            self._reading = False
            self._take(chunk)
            yield chunk
        self._done = True
        self._verify()

    def _take(self, chunk: bytes) -> None:
        self._count += len(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)

    def _verify(self) -> None:
        if self._digest is None or self._hasher is None:
            return
        try:
            self._digest.verify(self._hasher.digest(), self._what)
        except ChecksumMismatch as mismatch:
            self._mismatch = mismatch
            raise
        log.info("%s: %d bytes match %s %s:%s", self._what, self._count, self._digest.origin,
                 self._digest.algorithm, self._digest.expected.hex())

    async def settle(self, failure: ImportFailure, limit: int = SETTLE_LIMIT) -> None:
        """The pipeline stopped reading with `failure` (a corrupt gzip stream, say). When the bytes
        disagree with the stored digest, that is the cause and the failure only its symptom: read
        the rest (if at most `limit` bytes remain) and raise ChecksumMismatch from the failure."""
        if self._mismatch is not None:
            raise self._mismatch from failure
        if self._digest is None or self._done or self._reading:
            return
        if self._total is not None and self._total - self._count > limit:
            log.info("%s: not reading the remaining %d bytes to check %s after: %s", self._what,
                     self._total - self._count, self._digest.origin, failure.message)
            return
        start = self._count
        try:
            async for chunk in self._raw:
                self._take(chunk)
                if self._count - start > limit:
                    return
        except ImportFailure:
            return
        self._done = True
        try:
            self._verify()
        except ChecksumMismatch as mismatch:
            raise mismatch from failure


def explain_unprotected(what: str, why: str, user_checksum: bool) -> None:
    """Say in the log what protects an import whose object has no digest we can recompute."""
    if user_checksum:
        log.info("%s: %s; the user-supplied checksum protects this import", what, why)
    else:
        log.warning("%s: %s; only a user-supplied checksum could protect this import, and none was given",
                    what, why)


@asynccontextmanager
async def checked_stream(raw: AsyncIterator[bytes], found: tuple[StoredDigest | None, str], *, what: str,
                         total: int | None, description: str, user_checksum: bool,
                         identity: SourceIdentity | None = None, start: int = 0) -> AsyncIterator[SourceStream]:
    """The source's stream for the pipeline, verified against `found` (a digest, or None and why not).
    If the pipeline gives up early on data that may be corrupt, the digest gets the last word.
    `identity` and `start` are the version of the object and where the stream starts in it (a
    resumed import reads from an offset, where the stored digest, which covers the whole object,
    cannot be checked: the caller then passes no digest and says why)."""
    digest, why = found
    if digest is None:
        explain_unprotected(what, why, user_checksum)
    checked = CheckedStream(raw, digest, what, total)
    try:
        yield SourceStream(checked.chunks(), total, description, identity=identity, start=start)
    except (ChecksumMismatch, NoSpace, ConfigurationError, SourceUnavailable, TransferInterrupted):
        raise  # not about the bytes, or the stream itself broke
    except ImportFailure as failure:
        await checked.settle(failure)
        raise
