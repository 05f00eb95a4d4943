"""Content addressing: every manifest and blob is checked against the digest and size that name it.

`verify_bytes` checks a small document (manifest, config) held in memory. `VerifyingReader` wraps a
streaming blob (a layer) for the layer walk's worker thread: it hashes and counts the compressed bytes
as they are read, refuses a blob that runs past the size its descriptor gives, and `verify()` at the end
raises `ChecksumMismatch` naming the expected and the calculated digest. A mismatch is never retried
(upstream's checksum rule), and because the import pipeline drains the source to its end before
committing, the volume is discarded and nothing looks imported.

A sha256 blob is hashed with `importer.hashstate` when it can be, so that a restart point inside a
layer (`restart`) can keep the hash state at any offset of the last read (`state_at`) and a restarted
walk continue it (`VerifyingReader.restored`): the layer's digest is still checked end to end.

Used by `importer.sources.registry.image` (manifests, configs) and `layers` (layer blobs).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import aiohttp

from importer import hashstate
from importer.checksum import Hasher
from importer.errors import ChecksumMismatch

READ_SIZE = 1 << 20


class RawReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def algorithm_of(digest: str) -> str:
    return digest.partition(":")[0]


def new_hasher(digest: str) -> Hasher:
    return hashlib.new(algorithm_of(digest))


def mismatch(what: str, expected: str, seen: str) -> ChecksumMismatch:
    return ChecksumMismatch(f"checksum mismatch for {what}: expected {expected}, calculated {seen}")


def verify_bytes(data: bytes, digest: str, what: str, *, size: int | None = None) -> None:
    hasher = new_hasher(digest)
    hasher.update(data)
    seen = f"{algorithm_of(digest)}:{hasher.hexdigest()}"
    if seen != digest:
        raise mismatch(what, digest, seen)
    if size is not None and size != len(data):
        raise ChecksumMismatch(f"checksum mismatch for {what}: expected {size} bytes, got {len(data)}")


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit + 1` bytes of a body, so that the caller can tell when it was over the limit."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


class VerifyingReader:
    """A blob's bytes as they arrive, hashed and counted against its descriptor."""

    def __init__(self, inner: RawReader, digest: str, size: int, what: str, *,
                 hasher: Hasher | None = None, count: int = 0) -> None:
        self._inner = inner
        self._digest = digest
        self._size = size
        if hasher is None and algorithm_of(digest) == "sha256" and hashstate.supported("sha256"):
            hasher = hashstate.ResumableHash("sha256")
        self._hasher = hasher if hasher is not None else new_hasher(digest)
        self._before: bytes | None = None  # the saveable state before the last read, and that read
        self._last = b""
        self.what = what
        self.count = count
        self.eof = False

    @classmethod
    def restored(cls, inner: RawReader, digest: str, size: int, what: str, *, count: int, state: bytes,
                 library: str) -> VerifyingReader:
        """Continue hashing a blob whose first `count` bytes left `state` (`inner` starts at `count`)."""
        hasher = hashstate.ResumableHash.restore(algorithm_of(digest), state, library)
        return cls(inner, digest, size, what, hasher=hasher, count=count)

    @property
    def resumable(self) -> bool:
        return isinstance(self._hasher, hashstate.ResumableHash)

    def state_at(self, offset: int) -> bytes | None:
        """The hash state after the blob's first `offset` bytes, when `offset` lies within the last read."""
        hasher = self._hasher
        if not isinstance(hasher, hashstate.ResumableHash) or (self._before is None and offset != self.count):
            return None
        if offset == self.count:
            return hasher.state()
        start = self.count - len(self._last)
        if self._before is None or not start <= offset < self.count:
            return None
        again = hashstate.ResumableHash.restore(hasher.algorithm, self._before, hashstate.library_version())
        again.update(self._last[:offset - start])
        return again.state()

    def read(self, size: int = -1, /) -> bytes:
        if self.eof or size == 0:
            return b""
        data = self._inner.read(size if size is not None and size >= 0 else READ_SIZE)
        if not data:
            self.eof = True
            return b""
        self.count += len(data)
        if self.count > self._size:
            raise ChecksumMismatch(f"checksum mismatch for {self.what}: the blob is larger than the {self._size} "
                                   f"bytes its manifest gives")
        if isinstance(self._hasher, hashstate.ResumableHash):
            self._before, self._last = self._hasher.state(), data
        self._hasher.update(data)
        return data

    def drain(self) -> None:
        """Read whatever the layer walk did not need (tar padding, trailing blocks) so it is hashed too."""
        while self.read(READ_SIZE):
            pass

    def verify(self) -> None:
        self.drain()
        seen = f"{algorithm_of(self._digest)}:{self._hasher.hexdigest()}"
        if seen != self._digest:
            raise mismatch(self.what, self._digest, seen)
        if self.count != self._size:
            raise ChecksumMismatch(f"checksum mismatch for {self.what}: expected {self._size} bytes, "
                                   f"got {self.count}")
