"""Assertions shared by the object-store tests: what a user would check after an import."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.importer.conftest import ImportRun
from tests.support.catalog import ImageSet


def assert_imported(run: ImportRun, images: ImageSet) -> None:
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete", run.log
    assert run.disk.stat().st_size == images.virtual_size
    assert run.disk_sha256() == images.reference_sha256
    assert not run.scratch.exists() or list(run.scratch.iterdir()) == []


def assert_refused(run: ImportRun, algorithm: str, expected: str, seen: str) -> None:
    """A checksum failure: upstream's exit 0 + fatal JSON message, and nothing left on the volume."""
    assert run.returncode == 0, run.log
    assert run.message is not None
    assert (run.message.reason, run.message.retryable) == ("ChecksumError", False)
    assert f"checksum mismatch: expected {algorithm}:{expected}, calculated {algorithm}:{seen}" in run.message.message
    assert list(run.data.iterdir()) == []
    assert list(run.scratch.iterdir()) == []


def digest_of(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def flipped_copy(source: Path, target: Path, offset: int = 1 << 16) -> Path:
    data = bytearray(source.read_bytes())
    data[min(offset, len(data) - 1)] ^= 0xFF
    target.write_bytes(bytes(data))
    return target
