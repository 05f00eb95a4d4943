"""Inflating one compressed qcow2 cluster, with qemu's acceptance rules (block/qcow2-threads.c).

Deflate clusters are raw deflate streams with a 4 KiB window (`inflateInit2(-12)`); zstd clusters are
one or more zstd frames. The stored length is rounded up to 512-byte sectors, so trailing bytes are
expected. As in qemu, a cluster is good only if it inflates to exactly one full cluster: shorter
output, a broken stream or (zstd) a frame that runs past the cluster is corruption. Output is never
larger than one cluster, so a hostile cluster cannot balloon memory.

Inflating is the costly part of a compressed image (about 100 MB/s per core on a small server), so
`Inflater` runs it on a few worker threads (zlib and zstd release the GIL while they work) with a
bounded number of clusters in flight, while the engine goes on reading. Used by the engine.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import zstandard

from importer.errors import InvalidImage
from importer.qcow2stream.layout import COMPRESSION_ZSTD

DEFLATE_WINDOW_BITS = -12
_ZSTD_FEED = 256  # bytes per step when a frame does not declare its size: bounds a step's output
MAX_WORKERS = 4


class Inflater:
    """Inflates clusters on worker threads, each of which also writes its cluster with the thread-safe
    `write(guest, data)`: writing into the page cache costs about as much as inflating on a small
    server, so both run off the reading thread. Errors surface, in order, from `submit` or `drain`."""

    def __init__(self, cluster_size: int, compression: str, write: Callable[[int, bytes], None]) -> None:
        self._cluster_size = cluster_size
        self._compression = compression
        self._write = write
        self._workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
        self._depth = 2 * self._workers + 2
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[Future[None]] = deque()

    def submit(self, guest: int, data: bytes) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="qcow2-inflate")
        self._queue.append(self._pool.submit(self._work, guest, data))
        while len(self._queue) > self._depth:
            self._queue.popleft().result()

    def _work(self, guest: int, data: bytes) -> None:
        self._write(guest, inflate(data, self._cluster_size, self._compression, guest))

    def drain(self) -> None:
        while self._queue:
            self._queue.popleft().result()

    def close(self) -> None:
        """Stop the workers, dropping clusters not yet inflated (after a failure)."""
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def inflate(data: bytes | memoryview, cluster_size: int, compression: str, guest: int) -> bytes:
    try:
        if compression == COMPRESSION_ZSTD:
            out = _zstd(bytes(data), cluster_size)
        else:
            out = zlib.decompressobj(DEFLATE_WINDOW_BITS).decompress(data, cluster_size)
    except (zlib.error, zstandard.ZstdError) as e:
        raise _broken(guest, str(e)) from e
    if len(out) != cluster_size:
        raise _broken(guest, f"it inflates to {len(out)} bytes instead of {cluster_size}")
    return out


def _broken(guest: int, detail: str) -> InvalidImage:
    return InvalidImage(f"image is corrupt or truncated: the compressed cluster at guest offset {guest:#x} "
                        f"cannot be decompressed: {detail}")


def _zstd(data: bytes, cluster_size: int) -> bytes:
    """Whole frames until the cluster is full; each frame must end inside the cluster."""
    parts: list[bytes] = []
    produced = 0
    while produced < cluster_size:
        if not data:
            break
        frame = zstandard.ZstdDecompressor().decompressobj()
        declared = zstandard.frame_content_size(data)
        if 0 <= declared <= cluster_size - produced:
            out, data = frame.decompress(data), b""
        else:
            out, data = _zstd_bounded(frame, data, cluster_size - produced)
        if not frame.eof:
            raise zstandard.ZstdError("a zstd frame does not end within the cluster")
        parts.append(out)
        produced += len(out)
        data = frame.unused_data + data
    return b"".join(parts)


def _zstd_bounded(frame: zstandard.ZstdDecompressionObj, data: bytes, room: int) -> tuple[bytes, bytes]:
    """Feed a frame of unknown size in small steps; returns its output and the input not yet fed."""
    out = bytearray()
    for start in range(0, len(data), _ZSTD_FEED):
        out += frame.decompress(data[start:start + _ZSTD_FEED])
        if len(out) > room:
            raise zstandard.ZstdError("a zstd frame inflates beyond the cluster")
        if frame.eof:
            return bytes(out), data[start + _ZSTD_FEED:]
    return bytes(out), b""
