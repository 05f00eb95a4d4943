"""The embedded store's file through two connections, each on a thread of its own, so SQLite never
blocks the event loop: reads on one, writes on the other, committed in groups.

The schema, the rows and `Transaction` are `cdi.embedded.sqlite`; `cdi.embedded.store` and
`cdi.embedded.watch` call `read`, `write` and `data_version`; writers of several processes take turns
through `cdi.embedded.writegate` before SQLite's own lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cdi.embedded.sqlite import SCHEMA, StoreUnavailable, Transaction
from cdi.embedded.writegate import GateTimeout, WriteGate

T = TypeVar("T")


class Database:
    """The store file, through two connections on two threads of their own.

    Reads run on the reader's connection (WAL: a consistent snapshot, never blocked by a writer, even one
    of ours waiting for another process). Writes queue for the writer thread, which commits whatever is
    waiting together: one write-gate turn and one `BEGIN IMMEDIATE` … `COMMIT` for the group, each write
    inside its own savepoint, so a write that raises (a Conflict, an Invalid) is rolled back alone and
    the others still commit. A caller hears of its write only after the group's commit. This is what
    keeps writes from queueing behind each other when hundreds a second arrive from a process's
    controllers: before, each took its own gate turn and transaction on the one thread that also served
    every read, and reconciles waited up to a second at 1,000 DataVolumes. If SQLite itself fails
    (disk full, an I/O error, the busy timeout), the whole group is rolled back and every write in it
    gets `StoreUnavailable`, which is retryable."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: collections.deque[_Job | None] = collections.deque()  # taken from the queue, not yet run
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdi-embedded-sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._conn: sqlite3.Connection | None = None
        self._gate: WriteGate | None = None
        self._closed = False
        # Opening blocks the caller briefly (it may wait for another process's schema write) so that a
        # bad path fails here rather than at the first call.
        opened: Future[None] = Future()
        self._writer = threading.Thread(target=self._serve_writes, args=(opened,), daemon=True,
                                        name="cdi-embedded-sqlite-write")
        self._writer.start()
        try:
            opened.result()
            self._reader.submit(self._open_reader).result()
        except BaseException:
            self._stop_threads()
            raise

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn` in a read transaction: one consistent snapshot, never blocked by writers."""
        if self._closed:
            raise StoreUnavailable(f"the embedded store {self.path} is closed")

        def run() -> T:
            if self._read_conn is None:
                raise StoreUnavailable(f"the embedded store {self.path} is closed")
            try:
                return _transaction(self._read_conn, "BEGIN", fn, 0.0)
            except sqlite3.Error as e:
                raise StoreUnavailable(f"embedded store {self.path}: {e}") from e

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    async def write(self, fn: Callable[[Transaction], T], changed_at: float) -> T:
        """Run `fn` in a write transaction holding the file's write lock, committed with the writes queued
        beside it; rolls back `fn`'s changes alone if it raises."""
        result: T = await self._submit(_Job(fn, None, changed_at))
        return result

    async def data_version(self) -> int:
        """SQLite's `PRAGMA data_version` on the writing connection: it changes when another connection
        (another process, or this process's reader, which never writes) commits."""
        version: int = await self._submit(_Job(None, _data_version))
        return version

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._stop_threads)

    async def _submit(self, job: _Job) -> Any:
        if self._closed:
            raise StoreUnavailable(f"the embedded store {self.path} is closed")
        job.loop = asyncio.get_running_loop()
        self._writes.put(job)
        return await asyncio.wrap_future(job.future)

    def _stop_threads(self) -> None:
        self._writes.put(None)
        self._writer.join()
        self._reader.submit(self._close_reader).result()
        self._reader.shutdown(wait=True)

    # The writer thread.

    def _serve_writes(self, opened: Future[None]) -> None:
        try:
            self._open_writer()
        except BaseException as e:
            opened.set_exception(e)
            return
        opened.set_result(None)
        try:
            while (batch := self._next_batch()) is not None:
                self._run_batch(batch)
        finally:
            self._close_writer()

    def _next_batch(self) -> list[_Job] | None:
        """The next call alone, or the writes waiting now up to the next call (at least one; blocks for
        it), in the order they were queued; None once the store closes."""
        first = self._held.popleft() if self._held else self._writes.get()
        if first is None:
            return None
        batch = [first]
        if first.call is None:
            self._top_up(batch)
        return batch

    def _waiting(self) -> tuple[bool, _Job | None]:
        """(True, the next queued item) without blocking, held ones first; (False, None) if none waits."""
        if self._held:
            return True, self._held.popleft()
        try:
            return True, self._writes.get_nowait()
        except queue.Empty:
            return False, None

    def _top_up(self, group: list[_Job]) -> None:
        """Add to `group` the writes queued since (also once it has waited for the file: they commit in
        this turn instead of waiting for another). A call or the stop stays next, to run after the group."""
        while len(group) < MAX_GROUP:
            found, job = self._waiting()
            if not found:
                return
            if job is None or job.call is not None:
                self._held.appendleft(job)
                return
            group.append(job)

    def _run_batch(self, batch: list[_Job]) -> None:
        if batch[0].call is not None:
            self._call(batch[0])
        else:
            self._commit(batch)

    def _call(self, job: _Job) -> None:
        assert job.call is not None and self._conn is not None
        try:
            job.settle(True, job.call(self._conn))
        except sqlite3.Error as e:
            job.settle(False, StoreUnavailable(f"embedded store {self.path}: {e}"))

    def _commit(self, group: list[_Job]) -> None:
        if not group:
            return
        conn = self._conn
        assert conn is not None
        try:
            outcomes = self._gated(conn, group)
        except GateTimeout as e:
            failure: BaseException = StoreUnavailable(f"embedded store {self.path}: {e}")
        except sqlite3.Error as e:
            failure = StoreUnavailable(f"embedded store {self.path}: {e}")
        except BaseException as e:  # handed to every waiting caller; the thread lives on
            failure = e
        else:
            for job, (ok, value) in zip(group, outcomes, strict=True):
                job.settle(ok, value)
            return
        for job in group:
            job.settle(False, failure)

    def _gated(self, conn: sqlite3.Connection, group: list[_Job]) -> list[tuple[bool, Any]]:
        gate = self._gate
        # Entered before the gate: a collection already running ends before this process takes it.
        with _LOCK_HELD.held():
            if gate is not None:
                gate.acquire()
                self._top_up(group)  # `group` grows in place: the caller settles every job in it
            try:
                conn.execute("BEGIN IMMEDIATE")
                paused = _LoopsPaused({job.loop for job in group if job.loop is not None})
                try:
                    # A write whose caller gave up (its task was cancelled) while it waited is not applied, as
                    # a thread pool does not run a job cancelled before it started; once started it cannot be.
                    outcomes = [_in_savepoint(conn, job) if job.start() else (False, None) for job in group]
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    paused.resume()
                return outcomes
            finally:
                if gate is not None:
                    gate.release()

    def _open_writer(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise StoreUnavailable(f"cannot open the embedded store {self.path}: {e}") from e
        try:
            self._gate = WriteGate(self.path, self._busy_timeout)
        except OSError:
            self._gate = None  # e.g. a directory we may not create files in: SQLite's own lock still serialises
        self._conn = conn

    def _close_writer(self) -> None:
        while True:  # anything queued after the stop: the store is closed
            found, job = self._waiting()
            if not found:
                break
            if job is not None:
                job.settle(False, StoreUnavailable(f"the embedded store {self.path} is closed"))
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._gate is not None:
            self._gate.close()
            self._gate = None

    # The reader thread.

    def _open_reader(self) -> None:
        try:
            self._read_conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the embedded store {self.path}: {e}") from e

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None


class _LoopsPaused:
    """The event loops of a group's callers wait (at most `PAUSE_LIMIT`) while the group's transaction runs.

    The transaction holds the file's write lock, which every writing process waits for, and its ~10
    SQLite calls per write each hand the GIL back and must win it again: against a busy event loop that
    took up to the interpreter's 5 ms switch interval every time, and at 1,000 DataVolumes a group of
    two writes held the lock for a quarter of a second with 6 ms of its own work. With the loop waiting,
    the transaction runs at SQLite's speed; the loop loses no more than that."""

    def __init__(self, loops: set[asyncio.AbstractEventLoop]) -> None:
        self._done = threading.Event()
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._done.wait, PAUSE_LIMIT)
            except RuntimeError:  # the loop has closed: nothing to pause
                pass

    def resume(self) -> None:
        self._done.set()


class _LockHeld:
    """What this process changes while any of its writers holds (or is about to take) a store's write
    lock. Counted, so writers of several stores in one process nest: the first one in saves the
    settings, the last one out restores them.

    - The cyclic garbage collector is held off: a full collection stops every thread of the process
      (~80 ms with 1,000 DataVolumes cached), the writer with its lock too. Collection resumes at the
      next allocation after the lock is let go.
    - Threads hand the GIL over sooner (`HELD_SWITCH_INTERVAL`): the loop waits (`_LoopsPaused`), but
      another thread, such as the reader parsing a batch of watched changes, still kept the writer from
      the GIL for up to the 5 ms default at each of its SQLite calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._collecting = False
        self._interval = sys.getswitchinterval()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._collecting, self._interval = gc.isenabled(), sys.getswitchinterval()
                gc.disable()
                sys.setswitchinterval(min(self._interval, HELD_SWITCH_INTERVAL))
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    sys.setswitchinterval(self._interval)
                    if self._collecting:
                        gc.enable()


_LOCK_HELD = _LockHeld()
PAUSE_LIMIT = 1.0  # seconds an event loop waits for a transaction at most, should one ever hang
HELD_SWITCH_INTERVAL = 0.0002  # seconds another thread may keep the GIL from a writer holding the lock

MAX_GROUP = 32  # writes committed together at most: bounds how long another process waits for the file (~1 ms each)


@dataclass
class _Job:
    """A queued write (`write`, in the group's transaction) or a plain call on the writing connection."""

    write: Callable[[Transaction], Any] | None
    call: Callable[[sqlite3.Connection], Any] | None
    changed_at: float = 0.0
    future: Future[Any] = field(default_factory=Future)
    loop: asyncio.AbstractEventLoop | None = None  # the caller's, paused while the job's transaction runs

    def start(self) -> bool:
        """Mark the job started, so its caller can no longer cancel it; False if the caller already has."""
        return self.future.set_running_or_notify_cancel()

    def settle(self, ok: bool, value: Any) -> None:
        if self.future.cancelled():
            return
        if self.future.running() or self.future.set_running_or_notify_cancel():
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _in_savepoint(conn: sqlite3.Connection, job: _Job) -> tuple[bool, Any]:
    """Run one write of a group; its changes are undone alone if it raises anything but a SQLite error
    (which fails the whole group: SQLite may have rolled the transaction back itself)."""
    assert job.write is not None
    conn.execute("SAVEPOINT write")
    try:
        result = job.write(Transaction(conn, job.changed_at))
    except sqlite3.Error:
        raise
    except Exception as e:  # the caller's own error (Conflict, Invalid…), handed back to it
        conn.execute("ROLLBACK TO write")
        conn.execute("RELEASE write")
        return False, e
    conn.execute("RELEASE write")
    return True, result


def _transaction(conn: sqlite3.Connection, begin: str, fn: Callable[[Transaction], T], changed_at: float) -> T:
    conn.execute(begin)
    try:
        result = fn(Transaction(conn, changed_at))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result
