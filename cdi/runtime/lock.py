"""The single-active-process lock: one `cdi serve` reconciles, any other waits as a hot standby.

`ProcessLock` holds an exclusive `fcntl.flock` on a file for as long as a manager runs
(`cdi.runtime.manager`) and writes the holder's pid into it, so a waiting process can say whom it is
waiting for. flock belongs to the open file description, so the kernel drops it when the holder
exits however it dies, and two opens in one process contend like two processes. Waiting polls with a
non-blocking attempt so that a stop request is honoured at once instead of blocking a thread. The
file itself is never removed: unlinking a lock file lets a waiter lock an inode nobody else sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


class ProcessLock:
    """An exclusive, process-wide lock on `path`; `acquire` waits, `release` lets the next one in."""

    def __init__(self, path: Path, *, poll_interval: float = 1.0) -> None:
        self.path = Path(path)
        self._poll_interval = poll_interval
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process now holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for the lock, polling; False if `stop` was set first."""
        announced: int | None = None
        while not self.try_acquire():
            holder = self.holder()
            if holder is not None and holder != announced:
                logger.info("waiting for the controller lock held by pid %d (%s)", holder, self.path)
                announced = holder
            if stop is None:
                await asyncio.sleep(self._poll_interval)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await stop.wait()
            if stop.is_set():
                return False
        logger.info("took the controller lock %s (pid %d)", self.path, os.getpid())
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a waiter reading the pid now should not name us
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> int | None:
        """The pid written by the current holder, if there is one to read."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None
