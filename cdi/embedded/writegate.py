"""The write gate: processes sharing one embedded store take turns at writing through an `flock` on a
file beside it, before they ask SQLite for its write lock.

Why: SQLite's own wait for a busy write lock (the busy timeout) sleeps in growing steps, up to 100 ms
at a time, and does not wake when the lock is released. With `cdi serve` and a second writer (a node
agent, a benchmark's simulated kubelet, `cdi apply` in a loop) committing hundreds of times a second,
a reconcile could sit out a 100 ms sleep for a lock that had been free for most of it (the scale
benchmark saw single writes wait 0.3–0.9 s). Here a waiting writer polls a kernel lock every
millisecond, so it goes as soon as the writer ahead of it commits. Writers that do not use the gate
(an older build) still serialise on SQLite's lock, as before.

Used by `cdi.embedded.sqlite.Database`, on its one worker thread, around every write transaction.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

POLL = 0.001


class GateTimeout(Exception):
    """Another writer held the store for longer than the busy timeout."""


class WriteGate:
    def __init__(self, store_path: Path, timeout: float) -> None:
        self.path = store_path.with_name(store_path.name + ".writelock")
        self._timeout = timeout
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self) -> None:
        """Block until this process holds the gate (raises `GateTimeout` after the busy timeout)."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    held = f"another process has been writing to the store for over {self._timeout:g} s"
                    raise GateTimeout(held) from None
                time.sleep(POLL)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
