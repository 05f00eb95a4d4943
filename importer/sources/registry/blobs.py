"""Content addressing: every manifest and blob is checked against the digest and size that name it.

`verify_bytes` checks a small document (manifest, config) held in memory. `VerifyingReader` wraps a
streaming blob (a layer) for the layer walk's worker thread: it hashes and counts the compressed bytes
as they are read, refuses a blob that runs past the size its descriptor gives, and `verify()` at the end
raises `ChecksumMismatch` naming the expected and the calculated digest. A mismatch is never retried
(upstream's checksum rule), and because the import pipeline drains the source to its end before
committing, the volume is discarded and nothing looks imported.

Used by `importer.sources.registry.image` (manifests, configs) and `layers` (layer blobs).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import aiohttp

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

    def __init__(self, inner: RawReader, digest: str, size: int, what: str) -> None:
        self._inner = inner
        self._digest = digest
        self._size = size
        self._hasher = new_hasher(digest)
        self.what = what
        self.count = 0
        self.eof = False

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
