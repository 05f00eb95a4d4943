"""A restarted pod runner carries on with the containers the previous one ran: they outlive it (their
shim is nobody's child of the runner), the next runner re-attaches to them and reports their end as it
happened, even when they ended while no runner watched. A container whose shim was killed cannot be
found again: it counts as killed (exit 137, "the pod runner restarted"), what it left running is
killed, and the restart policy decides what happens next."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.orphans import markers
from cdi.embedded.pods.paths import PodPaths, log_path
from cdi.embedded.pods.runner import PodRunner
from tests.pods.conftest import BACKOFF_BASE, BACKOFF_CAP
from tests.pods.support import (
    NAMESPACE,
    alive,
    container,
    container_status,
    phase,
    pod,
    py,
    running,
    settle,
    wait_dead,
    wait_for_file,
)

# First run: leaves argv[1] behind and blocks until argv[2] exists, then exits with the code written
# there, like an import in progress. Later runs: say so and finish.
RESUMABLE = """
import os, sys, time
if not os.path.exists(sys.argv[1]):
    print("first run", flush=True)
    open(sys.argv[1], "w").write(str(os.getpid()))
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.05)
    print("first run ends", flush=True)
    sys.exit(int(open(sys.argv[2]).read() or 0))
print("second run", flush=True)
"""

# Starts a helper in its process group, writes "<own pid> <helper pid>" to argv[1], blocks until argv[2] exists.
FAMILY = """
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {helper.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
"""

# A pod runner in a process of its own: runs pod argv[3] until its container runs, says so, waits to be killed.
RUNNER_PROCESS = """
import asyncio, sys
from pathlib import Path
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key

async def main(db: str, state: str, name: str) -> None:
    async with EmbeddedCluster(Path(db)) as cluster:
        runner = PodRunner(cluster, Path(state))
        while True:
            await runner.reconcile(Key("default", name))
            statuses = (await cluster.get("v1", "Pod", name, "default")).get("status", {}).get("containerStatuses")
            if statuses and "running" in statuses[0]["state"]:
                break
            await asyncio.sleep(0.05)
        print("running", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


def shim_pid(pod_status: dict[str, object] | None) -> int:
    return int(str(container_status(pod_status)["containerID"]).removeprefix("pycdi://"))


@pytest.fixture
async def second_runner(cluster: EmbeddedCluster, state_dir: Path) -> AsyncIterator[PodRunner]:
    """Another runner on the same store and state directory, as after `cdi serve` restarted."""
    restarted = PodRunner(cluster, state_dir, backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, retry_after=0.2)
    yield restarted
    await restarted.close()


async def test_a_running_container_outlives_the_runner_and_is_reattached(
        cluster: EmbeddedCluster, runner: PodRunner, second_runner: PodRunner, tmp_path: Path) -> None:
    marker, go = tmp_path / "in-progress", tmp_path / "go"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker), str(go)]),
                             restart_policy="OnFailure"))
    before = await settle(runner, cluster, "import", running())
    await wait_for_file(marker)  # the import is under way
    for _ in range(250):  # the script creates the file, then writes its pid: wait for the pid
        if marker.read_text():
            break
        await asyncio.sleep(0.02)
    program = int(marker.read_text())
    assert await runner.detach() == 1  # `cdi serve` stops (or is upgraded): its containers carry on
    await asyncio.sleep(0.3)
    assert alive(program) and alive(shim_pid(before))

    again = await settle(second_runner, cluster, "import", running())
    assert container_status(again) == container_status(before)  # same run: no restart, same containerID
    go.write_text("0")
    done = await settle(second_runner, cluster, "import", phase("Succeeded"))
    main = container_status(done)
    assert (main["restartCount"], main["state"]["terminated"]["exitCode"]) == (0, 0)
    assert main["containerID"] == container_status(before)["containerID"]
    assert log_path(second_runner.state_dir, NAMESPACE, "import", "main").read_text() == \
        "first run\nfirst run ends\n"  # it never started over
    assert await wait_dead(program)


async def test_a_container_that_ended_while_no_runner_watched_is_reported_as_it_ended(
        cluster: EmbeddedCluster, runner: PodRunner, second_runner: PodRunner, tmp_path: Path) -> None:
    marker, go = tmp_path / "in-progress", tmp_path / "go"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker), str(go)])))
    before = await settle(runner, cluster, "import", running())
    await wait_for_file(marker)
    await runner.detach()
    go.write_text("3")
    assert await wait_dead(shim_pid(before))
    exit_file = PodPaths(second_runner.state_dir, NAMESPACE, "import").exit_file("main")
    assert json.loads(exit_file.read_text())["exitCode"] == 3

    done = await settle(second_runner, cluster, "import", phase("Succeeded", "Failed"))
    assert done is not None and done["status"]["phase"] == "Failed"  # restartPolicy Never, exit code 3
    terminated = container_status(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert container_status(done)["restartCount"] == 0


async def test_a_container_whose_shim_was_killed_counts_as_killed_and_runs_again(
        cluster: EmbeddedCluster, runner: PodRunner, second_runner: PodRunner, tmp_path: Path) -> None:
    marker, go = tmp_path / "in-progress", tmp_path / "go"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker), str(go)]),
                             restart_policy="OnFailure"))
    before = await settle(runner, cluster, "import", running())
    await wait_for_file(marker)
    program = int(marker.read_text())
    await runner.detach()
    os.kill(shim_pid(before), signal.SIGKILL)  # nothing can tell how its program ends any more
    assert await wait_dead(shim_pid(before))
    assert alive(program)

    done = await settle(second_runner, cluster, "import", phase("Succeeded"))
    assert await wait_dead(program)  # found by its marker variables and killed before the restart
    main = container_status(done)
    assert main["restartCount"] == 1
    last = main["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["message"]) == (137, "Error", "the pod runner restarted")
    assert log_path(second_runner.state_dir, NAMESPACE, "import", "main").read_text() == "second run\n"
    assert log_path(second_runner.state_dir, NAMESPACE, "import", "main", previous=True).read_text() == "first run\n"


async def test_containers_outlive_a_killed_runner_and_are_picked_up_by_the_next(
        cluster: EmbeddedCluster, runner: PodRunner, state_dir: Path, tmp_path: Path) -> None:
    pids_file, go = tmp_path / "pids", tmp_path / "go"
    await cluster.create(pod("stuck", container(command=[*py(FAMILY), str(pids_file), str(go)])))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUNNER_PROCESS, str(cluster.path), str(state_dir), "stuck",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    pids: list[int] = []
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line == b"running\n", (await process.stderr.read()).decode() if process.stderr else ""
        await wait_for_file(pids_file)
        pids = [int(pid) for pid in pids_file.read_text().split()]
        leader, helper = pids
        process.kill()  # `cdi serve` killed: no chance to clean up
        await process.wait()
        await asyncio.sleep(0.3)
        assert alive(leader) and alive(helper)  # the container goes on without it

        await settle(runner, cluster, "stuck", running())
        go.touch()
        done = await settle(runner, cluster, "stuck", phase("Succeeded", "Failed"))
        assert done is not None and done["status"]["phase"] == "Succeeded"
        assert container_status(done)["restartCount"] == 0
        assert await wait_dead(helper)  # what the container left in its group ends with it
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_pod_deleted_while_no_runner_watched_has_its_container_stopped(
        cluster: EmbeddedCluster, runner: PodRunner, second_runner: PodRunner, tmp_path: Path) -> None:
    marker, go = tmp_path / "in-progress", tmp_path / "go"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker), str(go)])))
    await settle(runner, cluster, "import", running())
    await wait_for_file(marker)
    program = int(marker.read_text())
    await runner.detach()
    await cluster.delete("v1", "Pod", "import", NAMESPACE)
    gone = await settle(second_runner, cluster, "import", lambda p: p is None)
    assert gone is None
    assert await wait_dead(program)  # SIGTERM reached it through its shim's process group


async def test_a_program_started_just_before_the_runner_died_is_killed_before_its_container_runs(
        cluster: EmbeddedCluster, second_runner: PodRunner, state_dir: Path) -> None:
    # The previous runner started the container's program and died before it wrote the run's handle or
    # the pod's status: nothing shows the program but its marker variables.
    created = await cluster.create(pod("server", container(command=py("print('the only run', flush=True)")),
                                       restart_policy="OnFailure"))
    stray = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(120)",
        env={**os.environ, **markers(state_dir, created["metadata"]["uid"], "main")})
    try:
        done = await settle(second_runner, cluster, "server", phase("Succeeded"))
        assert await asyncio.wait_for(stray.wait(), 10) == -signal.SIGKILL  # killed before the container ran
        assert container_status(done)["restartCount"] == 0
    finally:
        if stray.returncode is None:
            stray.kill()
            await stray.wait()
