"""A restarted pod runner picks up the pods the previous one ran: their containers count as killed
(exit 137, "the pod runner restarted") and the restart policy decides what happens next."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.paths import log_path
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

# First run: leaves argv[1] behind and blocks, like an import in progress. Later runs: finish.
RESUMABLE = """
import os, sys, time
if not os.path.exists(sys.argv[1]):
    print("first run", flush=True)
    open(sys.argv[1], "w").close()
    time.sleep(120)
print("second run", flush=True)
"""

# Starts a helper in its process group, writes "<own pid> <helper pid>" to argv[1], blocks.
FAMILY = """
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {helper.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
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


@pytest.fixture
async def second_runner(cluster: EmbeddedCluster, state_dir: Path) -> AsyncIterator[PodRunner]:
    """Another runner on the same store and state directory, as after `cdi serve` restarted."""
    restarted = PodRunner(cluster, state_dir, backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, retry_after=0.2)
    yield restarted
    await restarted.close()


async def test_an_interrupted_pod_runs_again_after_a_runner_restart(cluster: EmbeddedCluster, runner: PodRunner,
                                                                    second_runner: PodRunner,
                                                                    tmp_path: Path) -> None:
    marker = tmp_path / "in-progress"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker)]),
                             restart_policy="OnFailure"))
    before = await settle(runner, cluster, "import", running())
    leader = int(container_status(before)["containerID"].removeprefix("pycdi://"))
    await wait_for_file(marker)  # the import is under way
    await runner.close()  # the runner goes away; its processes with it; the status still says Running
    assert await wait_dead(leader)
    stale = await cluster.get("v1", "Pod", "import", NAMESPACE)
    assert "running" in container_status(stale)["state"]

    done = await settle(second_runner, cluster, "import", phase("Succeeded"))
    main = container_status(done)
    assert main["restartCount"] == 1
    last = main["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["message"]) == (137, "Error", "the pod runner restarted")
    assert main["state"]["terminated"]["exitCode"] == 0
    assert log_path(second_runner.state_dir, NAMESPACE, "import", "main").read_text() == "second run\n"
    assert log_path(second_runner.state_dir, NAMESPACE, "import", "main", previous=True).read_text() == "first run\n"


async def test_containers_die_with_a_killed_runner_and_leftovers_are_killed_on_restart(
        cluster: EmbeddedCluster, runner: PodRunner, state_dir: Path, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    await cluster.create(pod("stuck", container(command=[*py(FAMILY), str(pids_file)])))
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
        assert await wait_dead(leader)  # PR_SET_PDEATHSIG
        assert alive(helper)  # ...reaches only the container's main process

        done = await settle(runner, cluster, "stuck", phase("Succeeded", "Failed"))
        assert done is not None and done["status"]["phase"] == "Failed"  # restartPolicy Never
        terminated = container_status(done)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["message"]) == (137, "the pod runner restarted")
        assert await wait_dead(helper)  # found by its marker variables and killed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
