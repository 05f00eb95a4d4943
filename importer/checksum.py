"""User-supplied checksums (`algo:hex`), computed over the bytes as they arrive on the wire (before
decompression), as upstream does. Parse errors use upstream's messages."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from importer.errors import ChecksumMismatch, ConfigurationError

HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class ChecksumSpec:
    algorithm: str
    expected: str

    @property
    def text(self) -> str:
        """The spec in its normal form (what a checkpoint records)."""
        return f"{self.algorithm}:{self.expected}"

    def new_hasher(self) -> Hasher:
        return hashlib.new(self.algorithm)

    def verify(self, hasher: Hasher) -> None:
        seen = hasher.hexdigest()
        if seen != self.expected:
            raise ChecksumMismatch(f"checksum mismatch: expected {self.algorithm}:{self.expected}, "
                                   f"calculated {self.algorithm}:{seen}")


def parse_checksum(text: str) -> ChecksumSpec | None:
    """None for an empty spec; otherwise a validated spec or an "invalid checksum" error."""
    if not text:
        return None
    if ":" not in text:
        raise ConfigurationError(f"invalid checksum: invalid checksum format: expected 'algorithm:hash', got '{text}'")
    algorithm, _, digest = text.partition(":")
    algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
    if not digest:
        raise ConfigurationError("invalid checksum: checksum hash value cannot be empty")
    if algorithm not in HEX_LENGTHS:
        raise ConfigurationError(f"invalid checksum: unsupported hash algorithm '{algorithm}': "
                                 f"supported algorithms are: md5, sha1, sha256, sha512")
    if len(digest) != HEX_LENGTHS[algorithm]:
        raise ConfigurationError(f"invalid checksum: invalid {algorithm} hash length: expected "
                                 f"{HEX_LENGTHS[algorithm]} hex characters, got {len(digest)}")
    try:
        bytes.fromhex(digest)
    except ValueError as e:
        raise ConfigurationError(f"invalid checksum: checksum hash is not valid hexadecimal: {e}") from e
    return ChecksumSpec(algorithm, digest)
