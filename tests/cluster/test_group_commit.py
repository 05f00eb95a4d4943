"""The embedded store's database threads (`cdi.embedded.database`): writes that arrive together are
committed together, each rolled back alone when it fails, and reads never queue behind a writer that
waits for the file."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cdi.cluster.protocol import Object
from cdi.embedded.database import Database
from cdi.embedded.sqlite import Key, StoreUnavailable, Transaction
from cdi.embedded.watch import Notifier
from cdi.embedded.writegate import WriteGate


def _config_map(name: str) -> Object:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns", "uid": name}}


def _key(name: str) -> Key:
    return Key("", "ConfigMap", "ns", name)


def _put(name: str, *, fail: BaseException | None = None) -> Callable[[Transaction], int]:
    def write(tx: Transaction) -> int:
        stored = tx.put(_key(name), _config_map(name), "ADDED", None)
        if fail is not None:
            raise fail
        return int(stored["metadata"]["resourceVersion"])
    return write


async def _stored(db: Database) -> dict[str, int]:
    def read(tx: Transaction) -> dict[str, int]:
        return {obj["metadata"]["name"]: int(obj["metadata"]["resourceVersion"])
                for obj in tx.objects("", "ConfigMap", "ns")}
    return await db.read(read)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "store.db", busy_timeout=5.0)
    yield database
    await database.close()


async def test_a_failing_write_is_undone_alone_and_the_others_of_its_group_commit(db: Database) -> None:
    names = [f"cm-{i}" for i in range(60)]
    failing = {name for i, name in enumerate(names) if i % 7 == 3}
    results = await asyncio.gather(*(db.write(_put(name, fail=ValueError(f"refused {name}") if name in failing
                                                   else None), 0.0)
                                     for name in names), return_exceptions=True)
    for name, result in zip(names, results, strict=True):
        if name in failing:
            assert isinstance(result, ValueError) and str(result) == f"refused {name}"
        else:
            assert isinstance(result, int)
    stored = await _stored(db)
    assert set(stored) == set(names) - failing
    # The failed writes' resourceVersions were rolled back with them: the committed ones are contiguous.
    versions = sorted(stored.values())
    assert versions == list(range(versions[0], versions[0] + len(versions)))
    assert {stored[name] for name in stored} == {r for r in results if isinstance(r, int)}


async def test_a_sqlite_failure_fails_its_whole_group_and_nothing_of_it_is_stored(db: Database) -> None:
    names = [f"cm-{i}" for i in range(40)]
    broken = "cm-20"
    results = await asyncio.gather(*(db.write(_put(name, fail=sqlite3.OperationalError("disk I/O error")
                                                   if name == broken else None), 0.0)
                                     for name in names), return_exceptions=True)
    stored = await _stored(db)
    assert isinstance(results[names.index(broken)], StoreUnavailable)
    assert "disk I/O error" in str(results[names.index(broken)])
    for name, result in zip(names, results, strict=True):
        # Which writes shared the broken one's group depends on timing; each is either committed and
        # reported so, or not committed and reported unavailable (retryable).
        if isinstance(result, int):
            assert stored.get(name) == result
        else:
            assert isinstance(result, StoreUnavailable) and name not in stored
    assert broken not in stored
    assert await db.write(_put("after"), 0.0) > 0  # the writer thread lives on


async def test_reads_go_on_while_a_write_waits_for_another_process(db: Database, tmp_path: Path) -> None:
    await db.write(_put("before"), 0.0)
    other = WriteGate(tmp_path / "store.db", 5.0)  # another process's turn at the file (its own lock)
    other.acquire()
    try:
        pending = asyncio.ensure_future(db.write(_put("queued"), 0.0))
        await asyncio.sleep(0.1)
        assert not pending.done()
        assert await asyncio.wait_for(_stored(db), 1.0) == {"before": 2}
    finally:
        other.release()
        other.close()
    assert await asyncio.wait_for(pending, 5.0) == 3
    assert set(await _stored(db)) == {"before", "queued"}


async def test_writes_queued_at_close_are_refused_as_unavailable(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", busy_timeout=5.0)
    await db.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await db.write(_put("late"), 0.0)
    with pytest.raises(StoreUnavailable, match="closed"):
        await db.read(lambda tx: tx.current_rv())


async def test_a_local_write_wakes_only_the_watch_streams_of_its_kind() -> None:
    notifier = Notifier()
    pods, events = notifier.current("", "Pod"), notifier.current("", "Event")
    notifier.notify({("", "Event")})
    assert events.is_set() and not pods.is_set()
    assert notifier.current("", "Event") is not events  # the next write of Events sets a fresh one
    notifier.notify()  # another process's commit: kinds unknown, every stream looks
    assert pods.is_set()


async def test_a_write_whose_caller_gave_up_while_it_waited_is_not_applied(db: Database, tmp_path: Path) -> None:
    other = WriteGate(tmp_path / "store.db", 5.0)
    other.acquire()
    try:
        given_up = asyncio.ensure_future(db.write(_put("given-up"), 0.0))
        await asyncio.sleep(0.1)  # the writer thread has it and waits for the file
        wanted = asyncio.ensure_future(db.write(_put("wanted"), 0.0))
        given_up.cancel()
        await asyncio.sleep(0.05)
    finally:
        other.release()
        other.close()
    assert await asyncio.wait_for(wanted, 5.0) > 0
    assert given_up.cancelled()
    assert set(await _stored(db)) == {"wanted"}



async def test_writes_queued_while_a_group_waits_for_the_file_join_it(db: Database, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Under another process's writes, a write that arrives while this process's group waits for the
    file commits in that same turn instead of waiting for a turn of its own."""
    gate = db._gate
    assert gate is not None
    turns: list[int] = []
    acquire = gate.acquire
    monkeypatch.setattr(gate, "acquire", lambda: (acquire(), turns.append(1))[0])
    other = WriteGate(tmp_path / "store.db", 5.0)
    other.acquire()
    try:
        first = asyncio.ensure_future(db.write(_put("first"), 0.0))
        await asyncio.sleep(0.1)  # the writer thread has it and waits for the file
        later = [asyncio.ensure_future(db.write(_put(f"later-{i}"), 0.0)) for i in range(5)]
        await asyncio.sleep(0.05)
    finally:
        other.release()
        other.close()
    await asyncio.wait_for(asyncio.gather(first, *later), 5.0)
    assert len(turns) == 1
    assert set(await _stored(db)) == {"first", *(f"later-{i}" for i in range(5))}


def _many_statements(count: int, seen: list[float]) -> Callable[[Transaction], None]:
    """A write that runs `count` SQLite statements (each hands the GIL back and must win it again) and
    notes how long it held the transaction."""
    def write(tx: Transaction) -> None:
        started = time.monotonic()
        for index in range(count):
            tx.put(_key(f"cm-{index % 8}"), _config_map(f"cm-{index % 8}"), "MODIFIED", None)
        seen.append(time.monotonic() - started)
    return write


async def _write_three_times(db: Database, puts: int, seen: list[float]) -> None:
    for _ in range(3):
        await db.write(_many_statements(puts, seen), 0.0)


async def _busy_loop(until: asyncio.Event) -> None:
    """A loop as busy as a controller's under load: pure-Python work in 20 ms steps."""
    while not until.is_set():
        deadline = time.monotonic() + 0.02
        while time.monotonic() < deadline:
            pass
        await asyncio.sleep(0)


async def test_a_busy_event_loop_waits_while_its_transaction_holds_the_write_lock(db: Database) -> None:
    # Every writing process waits for the lock; against a busy loop each of the transaction's SQLite calls
    # used to wait for the GIL (up to the 5 ms switch interval): 60 puts (~240 calls) held it for seconds.
    seen: list[float] = []
    stop = asyncio.Event()
    busy = asyncio.create_task(_busy_loop(stop))
    try:
        await asyncio.sleep(0.05)
        await _write_three_times(db, 60, seen)
    finally:
        stop.set()
        await busy
    assert max(seen) < 0.15, f"transactions held the write lock for {[round(s * 1000) for s in seen]} ms"


async def test_a_busy_thread_does_not_stretch_a_transaction_holding_the_write_lock(db: Database) -> None:
    # The loop waits, but another thread (the reader parsing a batch of watched changes) kept each SQLite
    # call of the writer from the GIL for up to the 5 ms switch interval: 20 puts held the lock ~1 s.
    seen: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    busy = threading.Thread(target=spin)
    busy.start()
    try:
        await asyncio.sleep(0.02)
        await _write_three_times(db, 20, seen)
    finally:
        stop.set()
        busy.join()
    assert max(seen) < 0.3, f"transactions held the write lock for {[round(s * 1000) for s in seen]} ms"
    assert sys.getswitchinterval() == pytest.approx(0.005)  # restored once the lock is let go


async def test_no_garbage_collection_runs_while_a_transaction_holds_the_write_lock(tmp_path: Path) -> None:
    # A full collection stops every thread of the process, the writer with its lock too.
    enabled: list[bool] = []

    def write(tx: Transaction) -> None:
        enabled.append(gc.isenabled())
        tx.put(_key("cm"), _config_map("cm"), "ADDED", None)

    first, second = (Database(tmp_path / f"store-{i}.db", busy_timeout=5.0) for i in range(2))
    try:
        assert gc.isenabled()
        await asyncio.gather(*(db.write(write, 0.0) for db in (first, second) for _ in range(20)))
        assert enabled and not any(enabled)
        assert gc.isenabled()  # back on once the last writer let go
        gc.disable()  # someone else's choice is left as it was
        try:
            await first.write(write, 0.0)
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        await first.close()
        await second.close()
