"""Deleting a pod stops its process group (SIGTERM, SIGKILL after the grace period) and removes its files."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.node import FINALIZER
from cdi.embedded.pods.paths import pod_dir
from cdi.embedded.pods.runner import PodRunner
from tests.pods.support import (
    NAMESPACE,
    alive,
    container,
    get_pod,
    phase,
    pod,
    py,
    running,
    settle,
    wait_dead,
    wait_for_file,
)

# Starts a helper process (it stays in the process group), writes "<own pid> <helper pid>" to argv[1], waits.
# With argv[2] == "ignore-term" it records SIGTERM in argv[1] + ".term" and carries on.
FAMILY = """
import os, signal, subprocess, sys, time
if len(sys.argv) > 2:
    signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1] + ".term", "w").write("TERM"))
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {helper.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def pids_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    yield path
    if path.exists():  # never leave a process behind, whatever the test did
        for pid in map(int, path.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def read_pids(path: Path) -> list[int]:
    await wait_for_file(path)
    return [int(pid) for pid in path.read_text().split()]


async def test_deleting_a_running_pod_kills_its_process_group_and_removes_its_directory(
        cluster: EmbeddedCluster, runner: PodRunner, pids_file: Path) -> None:
    await cluster.create(pod("doomed", container(command=[*py(FAMILY), str(pids_file)]), restart_policy="Always"))
    current = await settle(runner, cluster, "doomed", running())
    assert current is not None and FINALIZER in current["metadata"]["finalizers"]
    leader, helper = await read_pids(pids_file)
    shim = int(current["status"]["containerStatuses"][0]["containerID"].removeprefix("pycdi://"))
    assert os.getpgid(leader) == shim  # the container ID names its shim, which leads the container's group
    directory = pod_dir(runner.state_dir, NAMESPACE, "doomed")
    assert directory.is_dir()

    await cluster.delete("v1", "Pod", "doomed", NAMESPACE)
    assert await get_pod(cluster, "doomed") is not None  # our finalizer holds it until the processes are gone
    await settle(runner, cluster, "doomed", lambda p: p is None)
    assert await wait_dead(leader)
    assert await wait_dead(helper)  # the whole group, not just the container's main process
    assert not directory.exists()


async def test_the_grace_period_passes_between_sigterm_and_sigkill(cluster: EmbeddedCluster, runner: PodRunner,
                                                                   pids_file: Path) -> None:
    await cluster.create(pod("stubborn", container(command=[*py(FAMILY), str(pids_file), "ignore-term"]),
                             terminationGracePeriodSeconds=1))
    await settle(runner, cluster, "stubborn", running())
    leader, helper = await read_pids(pids_file)
    loop = asyncio.get_running_loop()
    deleted_at = loop.time()
    await cluster.delete("v1", "Pod", "stubborn", NAMESPACE)
    terminating = await settle(runner, cluster, "stubborn", lambda p: p is not None and bool(
        p["metadata"].get("deletionTimestamp")))
    assert terminating is not None
    await settle(runner, cluster, "stubborn", lambda p: p is None)
    assert loop.time() - deleted_at >= 0.9
    assert Path(f"{pids_file}.term").read_text() == "TERM"
    assert await wait_dead(leader)
    assert await wait_dead(helper)


async def test_a_finished_pod_is_deleted_at_once_and_its_logs_go_with_it(cluster: EmbeddedCluster,
                                                                         runner: PodRunner) -> None:
    await cluster.create(pod("finished", container(command=py("print('bye')"))))
    await settle(runner, cluster, "finished", phase("Succeeded"))
    directory = pod_dir(runner.state_dir, NAMESPACE, "finished")
    assert (directory / "main.log").read_text() == "bye\n"
    await cluster.delete("v1", "Pod", "finished", NAMESPACE)
    assert await get_pod(cluster, "finished") is None  # no processes, no finalizer: gone at once
    await settle(runner, cluster, "finished", lambda p: p is None)
    assert not directory.exists()


async def test_a_new_pod_under_an_old_name_starts_afresh(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await cluster.create(pod("again", container(command=py("print('first')"))))
    first = await settle(runner, cluster, "again", phase("Succeeded"))
    assert first is not None
    await cluster.delete("v1", "Pod", "again", NAMESPACE)
    await cluster.create(pod("again", container(command=py("print('second')"))))
    second = await settle(runner, cluster, "again", phase("Succeeded"))
    assert second is not None and second["metadata"]["uid"] != first["metadata"]["uid"]
    directory = pod_dir(runner.state_dir, NAMESPACE, "again")
    assert (directory / "main.log").read_text() == "second\n"
    assert not (directory / "main.previous.log").exists()
    assert (directory / "uid").read_text().strip() == second["metadata"]["uid"]
