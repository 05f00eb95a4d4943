"""A container killed by a signal is reported as kubelet reports it: exit code 128+n, the signal, reason
Error, and (with FallbackToLogsOnError) its last log lines as the message, since it wrote none."""

from __future__ import annotations

from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.processes import ExitStatus, exit_status, oom_kills
from cdi.embedded.pods.runner import PodRunner
from tests.pods.support import both_runtimes, container, container_status, phase, pod, py, settle


@both_runtimes
async def test_a_container_killed_by_sigkill_is_terminated_137_with_the_signal(cluster: EmbeddedCluster,
                                                                               runner: PodRunner,
                                                                               pod_runtime: str) -> None:
    doomed = "import os, signal\nprint('copying block 7', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    await cluster.create(pod("doomed", container(command=py(doomed), terminationMessagePolicy="FallbackToLogsOnError")))
    done = await settle(runner, cluster, "doomed", phase("Failed"))
    terminated = container_status(done)["state"]["terminated"]
    # A container runtime reports the exit code only (as CRI does): the signal is left out.
    signal = 9 if pod_runtime == "process" else None
    assert (terminated["exitCode"], terminated.get("signal"), terminated["reason"]) == (137, signal, "Error")
    assert terminated["message"] == "copying block 7\n"


@both_runtimes
async def test_a_container_that_exits_has_no_signal(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await cluster.create(pod("plain", container(command=py("import sys; sys.exit(137)"))))
    done = await settle(runner, cluster, "plain", phase("Failed"))
    terminated = container_status(done)["state"]["terminated"]
    assert terminated["exitCode"] == 137 and "signal" not in terminated


def test_exit_status_and_the_kernels_oom_counter(tmp_path: Path) -> None:
    assert exit_status(-9) == ExitStatus(137, 9)
    assert exit_status(-15) == ExitStatus(143, 15)
    assert exit_status(1) == ExitStatus(1, 0)
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 12\noom_kill 3\n")
    assert oom_kills(vmstat) == 3
    assert oom_kills(tmp_path / "missing") is None
