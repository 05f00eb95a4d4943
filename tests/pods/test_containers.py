"""What only the container runtime enforces: the pod's user, only its volumes (read-only where asked,
Block volumes as devices), its memory and CPU limits, OOM kills reported as OOMKilled, and deletion
reaching the container (SIGTERM, SIGKILL after the grace period) with nothing left of it afterwards.
Skipped, with the reason, where podman cannot run or the image cannot be built."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.cgroups import CGROUP_ROOT, PARENT
from cdi.embedded.pods.containerrun import LABEL_POD_UID
from cdi.embedded.pods.containers import ContainerLauncher, podman, usage_of
from cdi.embedded.pods.paths import log_path
from cdi.embedded.pods.runner import PodRunner
from tests.pods.support import (
    NAMESPACE,
    bind,
    claim,
    config_map,
    container,
    container_status,
    exchange,
    phase,
    pod,
    py,
    running,
    settle,
    storage_class,
    wait_for_file,
)

pytestmark = pytest.mark.parametrize("pod_runtime", ["container"])
MI = 1024 * 1024

# Reports, in its termination message, who it runs as, what it can see and write, and its cgroup's limits.
REPORT = """
import json, os, socket, sys
def read(*paths):
    for path in paths:
        try:
            return open(path).read().split()
        except OSError:
            pass
def writable(path):
    try:
        open(path, "w").write("written by the pod")
        return True
    except OSError:
        return False
memory = read("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max")
quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max")
period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or quota[1:]
report = {"uid": os.getuid(), "groups": sorted(os.getgroups()), "hostname": socket.gethostname(),
          "memory": int(memory[0]), "cpus": int(quota[0]) / int(period[0]),
          "data": writable("/data/disk.img"), "certs": writable("/certs/extra"),
          "ca": open("/certs/ca.pem").read(), "sees": [p for p in sys.argv[1:] if os.path.exists(p)]}
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def podman_names(launcher: ContainerLauncher, pod_uid: str) -> list[str]:
    """The containers podman still has for a pod."""
    code, out, err = asyncio.run(podman(launcher.settings, "ps", "--all", "--filter", f"label={LABEL_POD_UID}={pod_uid}",
                                        "--format", "{{.Names}}"))
    assert code == 0, err
    return out.split()


async def names_left(launcher: ContainerLauncher, pod_uid: str) -> list[str]:
    return await asyncio.to_thread(podman_names, launcher, pod_uid)


async def bound_claim(cluster: EmbeddedCluster, name: str, path: Path, mode: str = "Filesystem") -> None:
    if not await cluster.list("storage.k8s.io/v1", "StorageClass"):
        await cluster.create(storage_class("local", "Immediate"))
    await cluster.create(claim(name, mode=mode))
    await bind(cluster, name, path)


async def test_a_pod_runs_as_its_user_with_only_its_volumes_and_its_limits(
        cluster: EmbeddedCluster, runner: PodRunner, launcher: ContainerLauncher, tmp_path: Path) -> None:
    volume = tmp_path / "pv-data"
    volume.mkdir()
    await bound_claim(cluster, "data", volume)
    await cluster.create(config_map("ca", {"ca.pem": "PEM"}))
    spec = container(command=[*py(REPORT), str(tmp_path), str(runner.state_dir), "/data"],
                     resources={"limits": {"memory": "64Mi", "cpu": "500m"}},
                     volumeMounts=[{"name": "data", "mountPath": "/data"},
                                   {"name": "certs", "mountPath": "/certs", "readOnly": True}])
    await cluster.create(pod("report", spec, securityContext={"runAsUser": 107, "fsGroup": 2000}, volumes=[
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "certs", "configMap": {"name": "ca"}}]))
    done = await settle(runner, cluster, "report", phase("Succeeded", "Failed"))
    status = container_status(done)
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    report = json.loads(terminated["message"])
    assert (report["uid"], report["hostname"]) == (107, "report")
    assert 2000 in report["groups"]
    # The pod's cgroup holds 64Mi; the container's own limit sits just above it (containers.MEMORY_MARGIN).
    assert 64 * MI <= report["memory"] <= 65 * MI
    assert report["cpus"] == 0.5
    assert (report["data"], report["certs"], report["ca"]) == (True, False, "PEM")
    assert report["sees"] == ["/data"]  # not the host's directories: only the pod's volumes are mounted
    assert (volume / "disk.img").read_text() == "written by the pod"
    assert done is not None
    uid = done["metadata"]["uid"]
    assert status["containerID"] == f"podman://pycdi-{uid}-main"
    assert await names_left(launcher, uid) == []
    assert not (CGROUP_ROOT / "memory" / PARENT / f"pycdi-{uid}-main").exists()


async def test_a_container_over_its_memory_limit_is_oom_killed(cluster: EmbeddedCluster, runner: PodRunner,
                                                               launcher: ContainerLauncher) -> None:
    hog = "print('allocating', flush=True)\nhog = bytearray(200 << 20)\nprint('survived')"
    await cluster.create(pod("hog", container(command=py(hog), resources={"limits": {"memory": "30M"}})))
    done = await settle(runner, cluster, "hog", phase("Succeeded", "Failed"))
    assert done is not None and done["status"]["phase"] == "Failed"
    terminated = container_status(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    usage = usage_of(launcher, done["metadata"]["uid"], "main")
    assert usage is not None
    print(f"\npeak {usage.peak} bytes under a 30M limit, hit {usage.limit_hits} times")
    assert usage.limit_hits > 0 and usage.peak <= 30_000_000


# Records SIGTERM in argv[1] and carries on; argv[2] says it is up.
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], "w").write("TERM"))
open(sys.argv[2], "w").write("up")
while True:
    time.sleep(0.05)
"""


async def test_deletion_sends_sigterm_then_sigkill_to_the_container_and_removes_it(
        cluster: EmbeddedCluster, runner: PodRunner, launcher: ContainerLauncher, tmp_path: Path) -> None:
    shared, volume, mount = exchange(tmp_path)
    polite = container("polite", command=py("import time\nwhile True: time.sleep(0.05)"))
    stubborn = container("stubborn", command=[*py(STUBBORN), str(shared / "term"), str(shared / "up")],
                         volumeMounts=[mount])
    await cluster.create(pod("doomed", polite, stubborn, volumes=[volume], terminationGracePeriodSeconds=2))
    current = await settle(runner, cluster, "doomed", lambda p: running("polite")(p) and running("stubborn")(p))
    assert current is not None
    uid = current["metadata"]["uid"]
    await wait_for_file(shared / "up")
    assert sorted(await names_left(launcher, uid)) == [f"pycdi-{uid}-polite", f"pycdi-{uid}-stubborn"]
    loop = asyncio.get_running_loop()
    deleted_at = loop.time()
    await cluster.delete("v1", "Pod", "doomed", NAMESPACE)
    await settle(runner, cluster, "doomed", lambda p: p is None)
    assert loop.time() - deleted_at >= 1.9  # the stubborn one held out for the grace period
    assert (shared / "term").read_text() == "TERM"
    assert await names_left(launcher, uid) == []


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a loop device, the file behind it) of 4 MiB; skipped where loop devices cannot be attached."""
    backing = tmp_path / "block.img"
    with backing.open("wb") as f:
        f.truncate(4 * MI)
    attached = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                              check=False)
    if attached.returncode != 0:
        pytest.skip(f"no loop device: {attached.stderr.strip()}")
    device = Path(attached.stdout.strip())
    yield device, backing
    subprocess.run(["losetup", "--detach", str(device)], check=False)


async def test_a_block_volume_is_a_device_the_pods_user_can_write(cluster: EmbeddedCluster, runner: PodRunner,
                                                                  loop_device: tuple[Path, Path]) -> None:
    device, backing = loop_device
    owner = device.stat()
    await bound_claim(cluster, "blk", device, mode="Block")
    write = ("import os, stat\npath = os.environ['CDI_DATA_PATH']\nassert stat.S_ISBLK(os.stat(path).st_mode)\n"
             "with open(path, 'r+b') as f:\n    f.write(b'written through the device')\n    os.fsync(f.fileno())")
    await cluster.create(pod("blk-writer", container(
        command=py(write), volumeDevices=[{"name": "blk", "devicePath": "/dev/cdi-block-volume"}],
        terminationMessagePolicy="FallbackToLogsOnError"), securityContext={"runAsUser": 107, "fsGroup": 107},
        volumes=[{"name": "blk", "persistentVolumeClaim": {"claimName": "blk"}}]))
    done = await settle(runner, cluster, "blk-writer", phase("Succeeded", "Failed"))
    terminated = container_status(done)["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    with backing.open("rb") as f:
        assert f.read(26) == b"written through the device"
    after = device.stat()  # the host's node was the pod user's for the run only
    assert (after.st_uid, after.st_gid, after.st_mode) == (owner.st_uid, owner.st_gid, owner.st_mode)


# A pod runner with the container runtime in a process of its own: runs pod argv[3] in image argv[4]
# until its container runs, says so, and waits to be killed.
RUNNER_PROCESS = """
import asyncio, os, sys
from pathlib import Path
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.containers import ContainerLauncher, PodmanSettings
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key

async def main(db: str, state: str, name: str, image: str) -> None:
    async with EmbeddedCluster(Path(db)) as cluster:
        launcher = ContainerLauncher(PodmanSettings.from_environment(os.environ), image)
        runner = PodRunner(cluster, Path(state), launcher=launcher)
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
# Says so in argv[1] and blocks until argv[2] exists, like an import in progress; then finishes.
RESUMABLE = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
print("started", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
print("finished", flush=True)
"""


async def test_a_killed_runners_container_keeps_running_and_the_next_runner_picks_it_up(
        cluster: EmbeddedCluster, runner: PodRunner, launcher: ContainerLauncher, state_dir: Path,
        tmp_path: Path) -> None:
    shared, volume, mount = exchange(tmp_path)
    marker, go = shared / "first", shared / "go"
    await cluster.create(pod("import", container(command=[*py(RESUMABLE), str(marker), str(go)], volumeMounts=[mount]),
                             restart_policy="OnFailure", volumes=[volume]))
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUNNER_PROCESS, str(tmp_path / "cluster.db"), str(state_dir), "import", launcher.image,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert first.stdout is not None
        assert await asyncio.wait_for(first.stdout.readline(), 60) == b"running\n"
        await wait_for_file(marker)
    finally:
        first.kill()  # the runner dies; podman's conmon keeps its container running
        await first.wait()
    stale = await cluster.get("v1", "Pod", "import", NAMESPACE)
    uid = stale["metadata"]["uid"]
    assert await names_left(launcher, uid) == [f"pycdi-{uid}-main"]

    await settle(runner, cluster, "import", running(), timeout=60)  # re-attached by name: still the same run
    go.touch()
    done = await settle(runner, cluster, "import", phase("Succeeded"), timeout=60)
    main = container_status(done)
    assert (main["restartCount"], main["state"]["terminated"]["exitCode"]) == (0, 0)
    assert main["containerID"] == container_status(stale)["containerID"]
    assert log_path(runner.state_dir, NAMESPACE, "import", "main").read_text() == "started\nfinished\n"
    assert await names_left(launcher, uid) == []
