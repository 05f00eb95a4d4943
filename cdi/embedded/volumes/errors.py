"""Errors of the local volume pools, each with the reason an Event shows and whether retrying can help.

The pools (`loop`, `directory`) raise these; the provisioner and reclaimer turn them into Warning
Events on the claim or volume and either retry with backoff (`retryable`) or leave the object waiting
for a person. Foreign failures (`cdi.toolrun.ToolError`, `OSError`) are translated where they
happen, with `raise ... from`.

    VolumeError
    ├── BlockVolumesUnsupported  Block requested from a pool of plain directories      terminal
    ├── UnsupportedFilesystem    a fsType the pool cannot format                       terminal
    ├── VolumeConflict           the name is taken by a volume of another size/mode    terminal
    ├── VolumeMissing            the backing file or directory has disappeared         terminal
    ├── VolumeToolFailed         losetup/mkfs/mount/umount/resize failed or timed out  retryable
    ├── VolumeNotGrown           the filesystem would not grow to offer the capacity   retryable
    ├── VolumeInUse              it can grow only unmounted, and a pod uses it         retryable
    ├── SnapshotNotConsistent    a pod writes to a volume the pool cannot freeze      retryable
    ├── SnapshotMissing          the snapshot a handle names is not in the pool        terminal
    └── PoolIOError              the pool's directory could not be written (ENOSPC…)   retryable
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class VolumeError(Exception):
    """A volume could not be created, attached or deleted; `str()` is written for `describe` output."""

    reason = "VolumeError"
    retryable = False


class BlockVolumesUnsupported(VolumeError):
    reason = "BlockVolumesUnsupported"


class UnsupportedFilesystem(VolumeError):
    reason = "UnsupportedFilesystem"


class VolumeConflict(VolumeError):
    reason = "VolumeConflict"


class VolumeMissing(VolumeError):
    reason = "VolumeMissing"


class VolumeToolFailed(VolumeError):
    reason = "VolumeToolFailed"
    retryable = True


class VolumeNotGrown(VolumeError):
    reason = "VolumeNotGrown"
    retryable = True


class VolumeInUse(VolumeError):
    reason = "VolumeInUse"
    retryable = True


class SnapshotNotConsistent(VolumeError):
    reason = "SnapshotNotConsistent"
    retryable = True


class SnapshotMissing(VolumeError):
    reason = "SnapshotMissing"


class PoolIOError(VolumeError):
    reason = "PoolIOError"
    retryable = True


@contextlib.contextmanager
def translated_os_errors(doing: str) -> Iterator[None]:
    """Report a failure of a pool's own file operations (ENOSPC, EACCES…) as a retryable `PoolIOError`."""
    try:
        yield
    except OSError as e:
        raise PoolIOError(f"{doing}: {e.strerror or e}") from e
