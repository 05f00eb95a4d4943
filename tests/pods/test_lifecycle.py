"""Pods as real processes: phases, container statuses, restarts with back-off, termination messages, logs."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.node import FINALIZER
from cdi.embedded.pods.paths import log_path
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key
from tests.pods.support import (
    NAMESPACE,
    both_runtimes,
    container,
    container_status,
    phase,
    pod,
    py,
    running,
    settle,
    waiting_reason,
)
from tests.pods.support import exchange as exchange_dir

# Waits for the file argv[1] to exist, then leaves a termination message and exits 0.
GATED = """
import os, sys, time
print("started", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
open(os.environ["CDI_TERMINATION_LOG"], "w").write("all done")
"""

# Counts its runs in argv[1]; fails (exit 1, with a message) until run number argv[2], then succeeds.
FLAKY = """
import os, sys
counter = sys.argv[1]
with open(counter, "a") as f:
    f.write("x")
run = len(open(counter).read())
print(f"run {run}", flush=True)
if run < int(sys.argv[2]):
    open(os.environ["CDI_TERMINATION_LOG"], "w").write(f"attempt {run} failed")
    sys.exit(1)
"""


@both_runtimes
async def test_pod_goes_pending_running_succeeded(cluster: EmbeddedCluster, runner: PodRunner, tmp_path: Path) -> None:
    shared, volume, mount = exchange_dir(tmp_path)
    gate = shared / "go"
    await cluster.create(pod("job", container(command=[*py(GATED), str(gate)], volumeMounts=[mount]), volumes=[volume]))
    current = await settle(runner, cluster, "job", running())
    assert current is not None
    status = current["status"]
    assert (status["phase"], current["spec"]["nodeName"]) == ("Running", "pycdi-node")
    assert FINALIZER in current["metadata"]["finalizers"]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network("127.1.0.0/16")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    main = container_status(current)
    assert main["state"]["running"]["startedAt"]
    assert (main["ready"], main["started"], main["restartCount"], main["image"]) == (
        True, True, 0, "quay.io/example/tool:v1")
    assert main["lastState"] == {}

    gate.touch()
    done = await settle(runner, cluster, "job", phase("Succeeded"))
    assert done is not None
    main = container_status(done)
    terminated = main["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (0, "Completed", "all done")
    assert terminated["startedAt"] <= terminated["finishedAt"]
    assert (main["ready"], main["started"]) == (False, False)
    ready = next(c for c in done["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    assert FINALIZER not in (done["metadata"].get("finalizers") or [])  # nothing left to wait for
    assert log_path(runner.state_dir, NAMESPACE, "job", "main").read_text() == "started\n"


@both_runtimes
async def test_on_failure_crash_loops_with_back_off_until_it_succeeds(cluster: EmbeddedCluster, runner: PodRunner,
                                                                      tmp_path: Path) -> None:
    shared, volume, mount = exchange_dir(tmp_path)
    counter = shared / "runs"
    await cluster.create(pod("flaky", container(command=[*py(FLAKY), str(counter), "4"], volumeMounts=[mount]),
                             restart_policy="OnFailure", volumes=[volume]))
    looping = await settle(runner, cluster, "flaky", waiting_reason("CrashLoopBackOff"))
    main = container_status(looping)
    assert looping is not None and looping["status"]["phase"] == "Running"  # as kubelet: it will run again
    assert main["restartCount"] == 1  # the first restart is immediate; the second waits
    uid = looping["metadata"]["uid"]
    assert main["state"]["waiting"]["message"] == (
        f"back-off 200ms restarting failed container=main pod=flaky_{NAMESPACE}({uid})")
    last = main["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["message"]) == (1, "Error", "attempt 2 failed")

    done = await settle(runner, cluster, "flaky", phase("Succeeded"))
    main = container_status(done)
    assert main["restartCount"] == 3
    assert main["state"]["terminated"]["exitCode"] == 0
    assert main["lastState"]["terminated"]["message"] == "attempt 3 failed"
    assert counter.read_text() == "xxxx"
    # The log of the last run, and the one before it.
    assert log_path(runner.state_dir, NAMESPACE, "flaky", "main").read_text() == "run 4\n"
    assert log_path(runner.state_dir, NAMESPACE, "flaky", "main", previous=True).read_text() == "run 3\n"
    events = (await cluster.list("v1", "Event", NAMESPACE)).items
    assert {e["reason"] for e in events} >= {"Scheduled", "Started", "BackOff"}


@both_runtimes
async def test_never_fails_with_the_termination_message(cluster: EmbeddedCluster, runner: PodRunner,
                                                        tmp_path: Path) -> None:
    shared, volume, mount = exchange_dir(tmp_path)
    counter = shared / "runs"
    await cluster.create(pod("once", container(command=[*py(FLAKY), str(counter), "2"], volumeMounts=[mount]),
                             volumes=[volume]))
    done = await settle(runner, cluster, "once", phase("Succeeded", "Failed"))
    assert done is not None and done["status"]["phase"] == "Failed"
    main = container_status(done)
    assert (main["restartCount"], main["lastState"]) == (0, {})
    terminated = main["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (1, "Error", "attempt 1 failed")
    assert counter.read_text() == "x"


@both_runtimes
async def test_fallback_to_logs_on_error_reports_the_end_of_the_log(cluster: EmbeddedCluster,
                                                                    runner: PodRunner) -> None:
    noisy = "import sys\nfor i in range(200):\n    print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    await cluster.create(pod("noisy", container(command=py(noisy), terminationMessagePolicy="FallbackToLogsOnError")))
    done = await settle(runner, cluster, "noisy", phase("Failed"))
    terminated = container_status(done)["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["message"].splitlines() == [f"line {i}" for i in range(120, 200)]  # kubelet's last 80


@both_runtimes
async def test_a_program_that_cannot_start_is_a_start_error(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await cluster.create(pod("typo", container(command=["no-such-program-pycdi"])))
    done = await settle(runner, cluster, "typo", phase("Failed"))
    terminated = container_status(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")
    assert terminated["message"] == 'exec: "no-such-program-pycdi": executable file not found in $PATH'


@both_runtimes
async def test_containers_run_side_by_side_and_the_pod_waits_for_all(cluster: EmbeddedCluster, runner: PodRunner,
                                                                     tmp_path: Path) -> None:
    shared, volume, mount = exchange_dir(tmp_path)
    gate = shared / "go"
    quick = container("quick", command=py("print('quick')"))
    slow = container("slow", command=[*py(GATED), str(gate)], volumeMounts=[mount])
    await cluster.create(pod("pair", quick, slow, volumes=[volume]))
    both = await settle(runner, cluster, "pair", lambda p: running("slow")(p) and "terminated" in container_status(
        p, "quick")["state"])
    assert both is not None and both["status"]["phase"] == "Running"
    ready = next(c for c in both["status"]["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "containers with unready status: [quick]"
    gate.touch()
    done = await settle(runner, cluster, "pair", phase("Succeeded", "Failed"))
    assert done is not None and done["status"]["phase"] == "Succeeded"
    assert [s["name"] for s in done["status"]["containerStatuses"]] == ["quick", "slow"]


@both_runtimes
async def test_pods_get_distinct_addresses_they_can_serve_on(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    serve = """
import os, socket
host, port = os.environ["CDI_METRICS_ADDR"].rsplit(":", 1)
server = socket.create_server((host, int(port)))
connection, _ = server.accept()
connection.sendall(os.environ["HOSTNAME"].encode())
connection.close()
"""
    names = ["srv-a", "srv-b", "srv-c"]
    for name in names:
        await cluster.create(pod(name, container(command=py(serve))))
    addresses = {}
    for name in names:
        current = await settle(runner, cluster, name, running())
        assert current is not None
        addresses[name] = current["status"]["podIP"]
    assert len(set(addresses.values())) == len(names)
    for name, ip in addresses.items():
        assert await _read_greeting(ip, 8443) == name  # as a controller would reach https://<podIP>:8443
        await settle(runner, cluster, name, phase("Succeeded"))


async def _read_greeting(host: str, port: int) -> str:
    for _ in range(100):
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data.decode()
    raise AssertionError(f"nothing listens on {host}:{port}")


async def test_a_process_exit_asks_for_its_pod_to_be_reconciled(cluster: EmbeddedCluster, state_dir: Path) -> None:
    woken: asyncio.Queue[Key] = asyncio.Queue()
    hooked = PodRunner(cluster, state_dir, on_change=woken.put_nowait)
    try:
        await cluster.create(pod("short", container(command=py("print('hi')"))))
        assert (await hooked.reconcile(Key(NAMESPACE, "short"))).requeue_after is None  # the exit will wake it
        assert await asyncio.wait_for(woken.get(), 10) == Key(NAMESPACE, "short")
        await hooked.reconcile(Key(NAMESPACE, "short"))
        done = await cluster.get("v1", "Pod", "short", NAMESPACE)
        assert done["status"]["phase"] == "Succeeded"
    finally:
        await hooked.close()


@both_runtimes
async def test_always_restarts_even_successful_containers(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await cluster.create(pod("ticker", container(command=py("print('tick')")), restart_policy="Always"))
    looping = await settle(runner, cluster, "ticker", lambda p: p is not None and any(
        s["restartCount"] >= 2 for s in (p.get("status") or {}).get("containerStatuses") or ()))
    assert looping is not None and looping["status"]["phase"] == "Running"
    last = container_status(looping)["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (0, "Completed")
