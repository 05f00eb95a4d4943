"""The manager: graceful shutdown around in-flight reconciles, no leaked tasks, and the controller lock
that keeps a second process as a hot standby until the first lets go."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.runtime.lock import ProcessLock
from cdi.runtime.manager import Manager
from tests.runtime.clock import FakeClock
from tests.runtime.toys import add_mirror, configmap, secret_value
from tests.runtime.waiting import running, until

ROOT = Path(__file__).resolve().parents[2]


async def mirrored(cluster: EmbeddedCluster, name: str, value: str) -> bool:
    return await secret_value(cluster, name) == value


async def read_until(stream: asyncio.StreamReader, text: str, timeout: float = 10) -> None:
    """Read a subprocess's log lines until one contains `text`."""
    async with asyncio.timeout(timeout):
        while text not in (line := (await stream.readline()).decode()):
            assert line, f"the process exited before logging {text!r}"


def other_tasks() -> set[asyncio.Task[object]]:
    """The tasks besides this test's own, and besides the store's: its check of SQLite's data_version after
    inotify saw the file written is short-lived, belongs to the cluster fixture (closed with it) and may be
    in flight at any moment (it made this test flaky on a loaded machine)."""
    return {task for task in asyncio.all_tasks() - {asyncio.current_task()}
            if not task.get_coro().__qualname__.startswith("EmbeddedCluster.")}  # type: ignore[union-attr]


async def test_stop_lets_an_in_flight_reconcile_finish_and_leaves_no_tasks(cluster: EmbeddedCluster,
                                                                         clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    gate = asyncio.Event()
    mirror = add_mirror(manager, cluster, gate=gate)
    before = other_tasks()
    stop = asyncio.Event()
    run = asyncio.create_task(manager.run(stop))
    await until(lambda: manager.active)
    await cluster.create(configmap("a", "1"))
    await asyncio.wait_for(mirror.entered.wait(), 3)
    stop.set()
    await cluster.create(configmap("late", "1"))  # arrives after stop: must not be reconciled
    await asyncio.sleep(0.05)
    assert not run.done()  # waiting for the reconcile in flight
    gate.set()
    await asyncio.wait_for(run, 3)
    assert await secret_value(cluster, "a") == "1"  # the in-flight reconcile completed its write
    assert await secret_value(cluster, "late") is None
    assert not manager.active
    assert other_tasks() == before
    assert clock.listeners == 0


async def test_a_reconcile_that_outlives_the_shutdown_timeout_is_cancelled(cluster: EmbeddedCluster,
                                                                          clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock, shutdown_timeout=0.05)
    mirror = add_mirror(manager, cluster, gate=asyncio.Event())  # never opened
    await cluster.create(configmap("a", "1"))
    async with running(manager):
        await asyncio.wait_for(mirror.entered.wait(), 3)
    assert mirror.finished == 0 and await secret_value(cluster, "a") is None
    assert other_tasks() == set()


async def test_stop_before_the_informers_sync_returns_cleanly(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    add_mirror(manager, cluster)
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(manager.run(stop), 3)
    assert not manager.active and other_tasks() == set()


async def test_controllers_are_added_before_the_manager_runs(cluster: EmbeddedCluster, clock: FakeClock) -> None:
    manager = Manager(cluster, clock=clock)
    add_mirror(manager, cluster)
    with pytest.raises(ValueError, match="already registered"):
        add_mirror(manager, cluster)
    async with running(manager):
        await until(lambda: manager.active)
        with pytest.raises(RuntimeError, match="before the manager runs"):
            add_mirror(manager, cluster)
        with pytest.raises(RuntimeError, match="runs once"):
            await manager.run(asyncio.Event())


async def test_a_second_manager_in_this_process_waits_for_the_lock(cluster: EmbeddedCluster, clock: FakeClock,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cdi.runtime.lock")
    lock_path = tmp_path / "controller.lock"
    first = Manager(cluster, clock=clock, lock_path=lock_path, lock_poll_interval=0.01)
    second = Manager(cluster, clock=clock, lock_path=lock_path, lock_poll_interval=0.01)
    add_mirror(first, cluster)
    add_mirror(second, cluster)
    async with running(first) as stop_first, running(second):
        await until(lambda: first.active)
        await until(lambda: f"waiting for the controller lock held by pid {os.getpid()}" in caplog.text)
        assert not second.active
        stop_first.set()
        await until(lambda: second.active, what="the standby to take over")
        await cluster.create(configmap("a", "1"))
        await until(lambda: mirrored(cluster, "a", "1"), what="the standby to reconcile")
    assert ProcessLock(lock_path).try_acquire()  # everything released


async def test_a_standby_process_takes_over_when_the_lock_is_released(cluster: EmbeddedCluster, clock: FakeClock,
                                                                     tmp_path: Path) -> None:
    lock_path = tmp_path / "controller.lock"
    manager = Manager(cluster, clock=clock, lock_path=lock_path)
    add_mirror(manager, cluster)
    async with running(manager) as stop:
        await until(lambda: manager.active)
        standby = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.runtime.standby", str(cluster.path), str(lock_path),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE)
        assert standby.stderr is not None
        try:
            await read_until(standby.stderr, f"waiting for the controller lock held by pid {os.getpid()}")
            assert await secret_value(cluster, "a") is None
            stop.set()
            await read_until(standby.stderr, f"took the controller lock {lock_path} (pid {standby.pid})")
            await cluster.create(configmap("a", "1"))
            await until(lambda: mirrored(cluster, "a", "1"), timeout=10, what="the standby to reconcile")
            assert ProcessLock(lock_path).holder() == standby.pid
        finally:
            standby.send_signal(signal.SIGTERM)
            errors = await asyncio.wait_for(standby.stderr.read(), 10)
            await asyncio.wait_for(standby.wait(), 10)
    assert standby.returncode == 0, errors.decode()
    with lock_path.open("r+") as probe:  # the standby released the lock on its graceful exit
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)


async def test_a_long_running_manager_leaves_its_start_up_heap_out_of_full_collections(cluster: EmbeddedCluster,
                                                                                    clock: FakeClock) -> None:
    import gc
    assert gc.get_freeze_count() == 0
    manager = Manager(cluster, clock=clock, freeze_heap=True)
    add_mirror(manager, cluster)
    try:
        async with running(manager):
            await until(lambda: manager.active, 10, "the manager to start")
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
