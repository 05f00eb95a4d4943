"""Prompt wake-ups for commits made by other processes sharing the embedded store's file.

A watch stream wakes at once for writes of its own process (`watch.Notifier`), but saw another process's
commit only when its poll interval passed (100 ms): a `cdi apply` waited that long before `cdi serve`
reacted, and `cdi wait` as long again to see the result. `DirectoryWatch` watches the store's directory
with inotify: in WAL mode every commit writes `<store>-wal` (and a checkpoint the store file itself).
The store (`EmbeddedCluster`) then asks SQLite whether *another* connection committed
(`PRAGMA data_version`, one cheap read on its connection) and only then wakes its streams, so its own
writes, which already woke them, cost one pragma and no extra reads. Polling stays as the fallback:
where inotify cannot be had (no libc symbol, out of watches), nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import struct
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger("cdi.embedded")

IN_MODIFY = 0x00000002
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event), then the name


def event_names(buffer: bytes) -> Iterator[str]:
    """The file names of the inotify events in `buffer` (as one `read` returns them)."""
    offset = 0
    while offset + _EVENT_HEADER.size <= len(buffer):
        _, _, _, length = _EVENT_HEADER.unpack_from(buffer, offset)
        start = offset + _EVENT_HEADER.size
        yield buffer[start:start + length].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        offset = start + length


@cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


class DirectoryWatch:
    """Calls `on_change` (on the event loop) when a file named in `names` in `directory` is written."""

    def __init__(self, directory: Path, names: set[str], on_change: Callable[[], None]) -> None:
        self._names = names
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        libc = _libc()
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        watch = int(libc.inotify_add_watch(fd, os.fsencode(directory), IN_MODIFY | IN_CREATE | IN_MOVED_TO))
        if watch < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")
        self._fd = fd

    @classmethod
    def start(cls, directory: Path, names: set[str], on_change: Callable[[], None]) -> DirectoryWatch | None:
        """A running watch, or None (logged once at debug level) where inotify is not available."""
        try:
            watch = cls(directory, names, on_change)
        except (OSError, AttributeError) as e:
            log.debug("no inotify on %s (%s): watches poll for other processes' writes", directory, e)
            return None
        watch._loop = asyncio.get_running_loop()
        watch._loop.add_reader(watch._fd, watch._readable)
        return watch

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    def _readable(self) -> None:
        hit = False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                buffer = os.read(self._fd, 64 * 1024)
                if not buffer:
                    break
                hit = hit or any(name in self._names for name in event_names(buffer))
        if hit:
            self._on_change()
