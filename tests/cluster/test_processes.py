"""Several processes sharing one store file: a watch sees other processes' writes, concurrent writers lose
nothing and never share a resourceVersion."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

from cdi.embedded import EmbeddedCluster
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
