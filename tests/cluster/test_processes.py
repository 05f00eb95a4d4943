"""Several processes sharing one store file: a watch sees other processes' writes, concurrent writers lose
nothing and never share a resourceVersion."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.sqlite import StoreUnavailable
from cdi.embedded.writegate import WriteGate
from tests.cluster.conftest import FakeClock
from tests.cluster.watching import take_events

# Runs in a child process: open the store, say "ready", wait for a line on stdin, then create `count`
# ConfigMaps named <prefix>-<i> and update each once.
WRITER = """
import asyncio, sys
from pathlib import Path
from cdi.embedded import EmbeddedCluster

async def main(path: str, prefix: str, count: int) -> None:
    async with EmbeddedCluster(Path(path)) as cluster:
        print("ready", flush=True)
        sys.stdin.readline()
        created = []
        for index in range(count):
            created.append(await cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"{prefix}-{index}", "namespace": "default", "labels": {"writer": prefix}}}))
        for index, obj in enumerate(created):
            obj["data"] = {"index": str(index)}
            await cluster.update(obj)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def start_writer(path: Path, prefix: str, count: int) -> asyncio.subprocess.Process:
    """A writer process that has opened the store and waits for `go`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), prefix, str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    return process


async def go(process: asyncio.subprocess.Process) -> None:
    _, stderr = await process.communicate(b"go\n")
    assert process.returncode == 0, stderr.decode()


async def test_watch_sees_writes_of_another_process(cluster: EmbeddedCluster, db_path: Path) -> None:
    since = (await cluster.list("v1", "ConfigMap")).resource_version
    stream = cluster.watch("v1", "ConfigMap", resource_version=since, label_selector="writer=child")
    await go(await start_writer(db_path, "child", 3))
    events = await take_events(stream, 6)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "child-0"), ("ADDED", "child-1"), ("ADDED", "child-2"),
        ("MODIFIED", "child-0"), ("MODIFIED", "child-1"), ("MODIFIED", "child-2")]
    assert events[-1].object["data"] == {"index": "2"}


async def test_concurrent_writers_lose_nothing(cluster: EmbeddedCluster, db_path: Path) -> None:
    per_writer = 200
    since = (await cluster.list("v1", "ConfigMap")).resource_version
    stream = cluster.watch("v1", "ConfigMap", resource_version=since)
    writers = await asyncio.gather(start_writer(db_path, "left", per_writer),
                                   start_writer(db_path, "right", per_writer))
    await asyncio.gather(*(go(writer) for writer in writers))

    events = await take_events(stream, 4 * per_writer, timeout=60)
    versions = [int(event.object["metadata"]["resourceVersion"]) for event in events]
    assert versions == sorted(set(versions))  # strictly increasing: no version handed out twice
    assert Counter(event.type for event in events) == {"ADDED": 2 * per_writer, "MODIFIED": 2 * per_writer}
    # Whether the two writers interleave depends on the scheduler (a loaded machine may run them one
    # after the other); what must hold either way is checked above and below.

    listed = await cluster.list("v1", "ConfigMap", "default")
    assert len(listed.items) == 2 * per_writer
    assert all(obj["data"] == {"index": obj["metadata"]["name"].split("-")[1]} for obj in listed.items)
    assert int(listed.resource_version) == versions[-1]
    mine = await cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "after", "namespace": "default"}})
    assert int(mine["metadata"]["resourceVersion"]) == versions[-1] + 1


# Runs in a child process: hold the store's write gate, and with "sqlite" SQLite's write lock too (as a
# writer in the middle of a transaction does), say "held", release both when a line arrives on stdin.
HOLDER = """
import sqlite3, sys
from pathlib import Path
from cdi.embedded.writegate import WriteGate

gate = WriteGate(Path(sys.argv[1]), 30.0)
gate.acquire()
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "sqlite":
    conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
if conn.in_transaction:
    conn.execute("COMMIT")
gate.release()
print("released", flush=True)
sys.stdin.readline()
"""


async def test_a_writer_waiting_for_another_process_goes_as_soon_as_it_commits(cluster: EmbeddedCluster,
                                                                               db_path: Path) -> None:
    waits = [await _wait_behind_another_writer(cluster, db_path, f"waited-{round_}") for round_ in range(6)]
    # SQLite's own busy wait is asleep 100 ms at a time by then: ~50 ms after the commit on average
    assert sorted(waits)[len(waits) // 2] < 0.025, [f"{w * 1000:.0f} ms" for w in waits]


async def _wait_behind_another_writer(cluster: EmbeddedCluster, db_path: Path, name: str) -> float:
    """How long after another process's commit a write that waited for it completes."""
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(db_path), "sqlite",
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert holder.stdin is not None and holder.stdout is not None
    assert await holder.stdout.readline() == b"held\n"
    write = asyncio.create_task(cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": name, "namespace": "default"}}))
    await asyncio.sleep(0.5)
    assert not write.done()
    loop = asyncio.get_running_loop()
    holder.stdin.write(b"go\n")
    assert await holder.stdout.readline() == b"released\n"
    released = loop.time()
    await write
    waited = loop.time() - released
    holder.stdin.write(b"exit\n")
    await holder.wait()
    return waited


async def test_a_store_held_past_the_busy_timeout_is_unavailable_with_the_reason(db_path: Path,
                                                                                clock: FakeClock) -> None:
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(db_path), "gate",
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert holder.stdin is not None and holder.stdout is not None
    assert await holder.stdout.readline() == b"held\n"
    try:
        async with EmbeddedCluster(db_path, clock=clock, busy_timeout=0.3) as short:
            with pytest.raises(StoreUnavailable, match=r"writing to the store for over 0\.3 s"):
                await short.create({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "never", "namespace": "default"}})
    finally:
        holder.kill()
        await holder.wait()


# Runs in a child process: a writer that starts waiting for the gate (it is held) and says when it got it.
WAITER = """
import sys, time
from pathlib import Path
from cdi.embedded.writegate import WriteGate

gate = WriteGate(Path(sys.argv[1]), 30.0)
print("waiting", flush=True)
gate.acquire()
print(f"got {time.monotonic()}", flush=True)
time.sleep(0.02)
gate.release()
"""


def test_a_writer_taking_the_gate_again_lets_a_waiting_process_go_first(db_path: Path) -> None:
    gate = WriteGate(db_path, 30.0)
    gate.acquire()
    with subprocess.Popen([sys.executable, "-c", WAITER, str(db_path)], stdout=subprocess.PIPE, text=True) as waiter:
        try:
            assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
            time.sleep(0.5)  # the other writer is in the waiting room, polling the gate
            gate.release()
            gate.acquire()  # at once, as a busy process's next group of writes does
            again = time.monotonic()
            gate.release()
            got = float(waiter.stdout.readline().split()[1])
            assert got < again, f"the waiting process got the gate {(got - again) * 1000:.0f} ms after we took it again"
            assert waiter.wait(10) == 0
        finally:
            waiter.kill()
            gate.close()
