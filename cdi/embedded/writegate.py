"""The write gate: processes sharing one embedded store take turns at writing through an `flock` on a
file beside it, before they ask SQLite for its write lock.

Why: SQLite's own wait for a busy write lock (the busy timeout) sleeps in growing steps, up to 100 ms
at a time, and does not wake when the lock is released. With `cdi serve` and a second writer (a node
agent, a benchmark's simulated kubelet, `cdi apply` in a loop) committing hundreds of times a second,
a reconcile could sit out a 100 ms sleep for a lock that had been free for most of it (the scale
benchmark saw single writes wait 0.3–0.9 s). Here a waiting writer polls a kernel lock every
millisecond, so it goes as soon as the writer ahead of it commits, and a writer about to take the gate
again lets one that is already waiting go first (`WriteGate`). Writers that do not use the gate (an
older build) still serialise on SQLite's lock, as before.

Used by `cdi.embedded.database.Database`, on its writer thread, around every group of writes it commits.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

POLL = 0.001
FAIR_WAIT = 0.05  # longest a writer lets another process's waiting writer go first


class GateTimeout(Exception):
    """Another writer held the store for longer than the busy timeout."""


class WriteGate:
    """The gate file (an exclusive `flock` while a process writes) and, beside it, a waiting-room file a
    waiting writer holds shared. A lock released and taken again at once would go to its holder nearly
    every time (a waiter only looks every millisecond), so a busy process — committing a group of writes
    after another — could keep another waiting for a second or more: before taking the gate, a writer
    first lets a writer already in the waiting room go (for up to `FAIR_WAIT`)."""

    def __init__(self, store_path: Path, timeout: float) -> None:
        self.path = store_path.with_name(store_path.name + ".writelock")
        self._timeout = timeout
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._waiting = os.open(self.path.with_name(self.path.name + ".waiting"),
                                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            os.close(self._fd)
            raise

    def acquire(self) -> None:
        """Block until this process holds the gate (raises `GateTimeout` after the busy timeout)."""
        self._let_waiting_writers_go_first()
        deadline = time.monotonic() + self._timeout
        fcntl.flock(self._waiting, fcntl.LOCK_SH)
        try:
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        held = f"another process has been writing to the store for over {self._timeout:g} s"
                        raise GateTimeout(held) from None
                    time.sleep(POLL)
        finally:
            fcntl.flock(self._waiting, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._waiting)

    def _let_waiting_writers_go_first(self) -> None:
        """Wait while another process's writer is in the waiting room, until it has the gate (it leaves
        the room then) or `FAIR_WAIT` passed."""
        deadline = time.monotonic() + FAIR_WAIT
        while True:
            try:
                fcntl.flock(self._waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(POLL)
                continue
            fcntl.flock(self._waiting, fcntl.LOCK_UN)
            return
