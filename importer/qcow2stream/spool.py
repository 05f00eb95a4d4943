"""Where the streaming reader keeps host clusters it has passed before knowing what they hold.

A cluster whose L2 table has not been read yet might be guest data, so it is kept until the last L2
table has gone by. qemu's own layouts need this rarely and briefly (a compressed cluster packed into
the host cluster just before a new L2 table, a refcount block), so clusters live in memory up to
`MEMORY_LIMIT`. Past that the spool spills to a sparse file in scratch space when the import has
some; without it the import cannot continue in one pass and `SpoolExhausted` says why, so the
controller retries with scratch space. All-zero clusters are never kept: they read back as zeros.
A cluster taken as a guest cluster's data is dropped at once (nothing else may claim it); what is left
is the image's own bytes, which a restart at a checkpoint reads again (`clusters`).
Used by `importer.qcow2stream.engine`.
"""

from __future__ import annotations

import os
from pathlib import Path

from importer.blockio import no_space_guard

MEMORY_LIMIT = 32 << 20
SPOOL_NAME = "qcow2-spool"


class SpoolExhausted(Exception):
    """More out-of-order data than memory holds, and no scratch space to spill it to."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Spool:
    def __init__(self, cluster_size: int, scratch_dir: Path | None, *, memory_limit: int = MEMORY_LIMIT) -> None:
        self._cluster_size = cluster_size
        self._scratch_dir = scratch_dir
        self._memory_limit = memory_limit
        self._memory: dict[int, bytes] = {}
        self._memory_bytes = 0
        self._file: int | None = None
        self._path: Path | None = None
        self._on_disk: set[int] = set()
        self.spilled = 0  # bytes written to scratch space

    def put(self, cluster: int, data: bytes, why: str) -> None:
        if self._file is None and self._memory_bytes + len(data) > self._memory_limit:
            self._spill(why)
        if self._file is not None:
            self._write(cluster, data)
        else:
            self._memory[cluster] = data
            self._memory_bytes += len(data)

    def get(self, cluster: int) -> bytes | None:
        if (data := self._memory.get(cluster)) is not None:
            return data
        if self._file is None or cluster not in self._on_disk:
            return None
        return os.pread(self._file, self._cluster_size, cluster * self._cluster_size)

    def __contains__(self, cluster: int) -> bool:
        return cluster in self._memory or cluster in self._on_disk

    def __len__(self) -> int:
        return len(self._memory) + len(self._on_disk)

    def clusters(self) -> list[int]:
        return sorted({*self._memory, *self._on_disk})

    def discard(self, cluster: int) -> None:
        """A kept cluster that nothing can claim any more (it became a guest cluster's data)."""
        if (data := self._memory.pop(cluster, None)) is not None:
            self._memory_bytes -= len(data)
        self._on_disk.discard(cluster)

    def _spill(self, why: str) -> None:
        if self._scratch_dir is None:
            raise SpoolExhausted(f"{why}; more than {self._memory_limit >> 20} MiB of the image arrived before "
                                 f"the tables that map it, so it needs random access (scratch space)")
        self._path = self._scratch_dir / SPOOL_NAME
        self._path.unlink(missing_ok=True)
        self._file = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        for cluster, data in self._memory.items():
            self._write(cluster, data)
        self._memory.clear()
        self._memory_bytes = 0

    def _write(self, cluster: int, data: bytes) -> None:
        assert self._file is not None
        try:
            os.pwrite(self._file, data, cluster * self._cluster_size)
        except OSError as e:
            raise no_space_guard(e, "scratch space") from e
        self._on_disk.add(cluster)
        self.spilled += len(data)

    def clear(self) -> None:
        """Nothing more can claim a kept cluster: drop them all and delete the spill file."""
        self._memory.clear()
        self._memory_bytes = 0
        self._on_disk.clear()
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
