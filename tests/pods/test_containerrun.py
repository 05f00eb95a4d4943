"""The container runtime's pure half: a pod's container as a `podman run` command line, podman's
State, why a program never ran, and when a container counts as OOMKilled; and where podman's settings
are and which runtime `cdi serve --pod-runtime` gets on a machine without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdi.embedded.pods.cgroups import MemoryUsage, verdict
from cdi.embedded.pods.containerrun import (
    ContainerRun,
    ContainerState,
    Device,
    Mount,
    container_run,
    device_owner,
    parse_state,
    run_argv,
    start_error,
)
from cdi.embedded.pods.containers import PodmanSettings, RuntimeUnavailable, choose_launcher
from cdi.embedded.pods.layout import LayoutError, LocalVolume
from cdi.embedded.pods.spec import Limits, RunAs, parse_pod
from tests.pods.support import container, pod

IMAGE = "localhost/pycdi:abc"
MARKERS = {"PYCDI_POD_UID": "u1", "PYCDI_POD_RUNNER_STATE": "/state"}


def importer_pod(**container_fields: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "args": ["-v=1", "$(SOURCE)"], "image": "quay.io/kubevirt/cdi-importer:v1",
        "env": [{"name": "SOURCE", "value": "http"}],
        "resources": {"limits": {"memory": "600M", "cpu": "750m"}, "requests": {"memory": "60M"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "certs", "mountPath": "/certs", "readOnly": True}],
        "volumeDevices": [{"name": "block", "devicePath": "/dev/cdi-block-volume"}]}
    spec = container("importer", **(fields | container_fields))
    spec.pop("command")
    manifest = pod("importer-dv", spec, volumes=[
        {"name": "data", "persistentVolumeClaim": {"claimName": "dv"}},
        {"name": "certs", "configMap": {"name": "ca"}},
        {"name": "block", "persistentVolumeClaim": {"claimName": "blk"}}],
        securityContext={"runAsNonRoot": True, "runAsUser": 107, "fsGroup": 107})
    manifest["metadata"]["uid"] = "u1"
    return manifest


VOLUMES = {"data": LocalVolume(Path("/pools/pv-1")), "certs": LocalVolume(Path("/state/certs"), materialised=True),
           "block": LocalVolume(Path("/dev/loop7"), block=True)}


def test_an_importer_container_is_planned_with_the_pods_paths_user_and_limits() -> None:
    info = parse_pod(importer_pod())
    run = container_run(info, info.containers[0], VOLUMES, own_env={"SOURCE": "http"}, markers=MARKERS,
                        termination_file=Path("/state/termination/importer"), pod_ip="127.1.0.9",
                        devices={Path("/dev/loop7")})
    assert run == ContainerRun(
        name="pycdi-u1-importer", command=("cdi-importer", "-v=1", "http"),
        env={"CDI_TERMINATION_LOG": "/dev/termination-log", "CDI_DATA_PATH": "/dev/cdi-block-volume",
             "CDI_METRICS_ADDR": "127.1.0.9:8443", "SOURCE": "http", **MARKERS},
        mounts=(Mount("/data", Path("/pools/pv-1"), own=True), Mount("/certs", Path("/state/certs"), True, True),
                Mount("/dev/termination-log", Path("/state/termination/importer"), own=True)),
        devices=(Device("/dev/cdi-block-volume", Path("/dev/loop7")),), run_as=RunAs(107, None, 107),
        limits=Limits(600_000_000, 0.75), hostname="importer-dv",
        labels={"pycdi.local/pod-uid": "u1", "pycdi.local/state-dir": "/state"})


def test_a_block_volume_that_is_a_plain_file_is_bound_at_the_device_path() -> None:
    info = parse_pod(importer_pod())
    run = container_run(info, info.containers[0], VOLUMES, own_env={}, markers={},
                        termination_file=Path("/t"), pod_ip="", devices=())
    assert run.devices == ()
    assert Mount("/dev/cdi-block-volume", Path("/dev/loop7"), own=True) in run.mounts


def test_the_containers_own_security_context_wins_over_the_pods() -> None:
    info = parse_pod(importer_pod(securityContext={"runAsUser": 0, "runAsGroup": 5}))
    assert info.run_as(info.containers[0]) == RunAs(0, 5, 107)


@pytest.mark.parametrize(("mounts", "devices", "message"), [
    ([{"name": "block", "mountPath": "/data"}], [], 'volume "block" has volumeMode Block'),
    ([], [{"name": "data", "devicePath": "/dev/x"}], 'volume "data" has volumeMode Filesystem'),
    ([{"name": "nope", "mountPath": "/data"}], [], 'volume "nope" mounted at /data is not a volume of the pod'),
])
def test_mounts_that_do_not_fit_the_volumes_are_refused(mounts: list[object], devices: list[object],
                                                        message: str) -> None:
    info = parse_pod(importer_pod(volumeMounts=mounts, volumeDevices=devices))
    with pytest.raises(LayoutError, match=message):
        container_run(info, info.containers[0], VOLUMES, own_env={}, markers={}, termination_file=Path("/t"),
                      pod_ip="")


def test_run_argv_is_exact() -> None:
    run = ContainerRun(
        name="pycdi-u1-importer", command=("cdi-importer", "-v=1"),
        env={"SECRET_KEY": "s3cr3t", "PATH": "/opt/bin", "CDI_DATA_PATH": "/data"},
        mounts=(Mount("/data", Path("/pools/pv-1"), own=True), Mount("/certs", Path("/state/certs"), True, True),
                Mount("/host", Path("/srv/host"))),
        devices=(Device("/dev/cdi-block-volume", Path("/dev/loop7")),), run_as=RunAs(107, None, 107),
        limits=Limits(600_000_000, 0.75), workdir="/data", hostname="importer-dv",
        labels={"pycdi.local/pod-uid": "u1"})
    argv, by_name = run_argv(run, IMAGE, cgroup_parent="/pycdi/pycdi-u1-importer", memory_margin=1 << 20)
    assert argv == [
        "podman", "run", "--name", "pycdi-u1-importer", "--network", "host", "--log-driver", "passthrough",
        "--stop-signal", "SIGTERM", "--pull", "never", "--init", "--hostname", "importer-dv",
        "--cgroup-parent", "/pycdi/pycdi-u1-importer", "--user", "107", "--group-add", "107",
        "--memory", "601048576", "--memory-swap", "601048576", "--cpus", "0.75",
        "--volume", "/pools/pv-1:/data:U", "--volume", "/state/certs:/certs:ro,U", "--volume", "/srv/host:/host",
        "--device", "/dev/loop7:/dev/cdi-block-volume:rwm",
        "--env", "SECRET_KEY", "--env", "PATH=/opt/bin", "--env", "CDI_DATA_PATH",
        "--label", "pycdi.local/pod-uid=u1", "--workdir", "/data",
        "--entrypoint", "cdi-importer", IMAGE, "-v=1"]
    assert by_name == {"SECRET_KEY": "s3cr3t", "CDI_DATA_PATH": "/data"}  # values stay out of the process list


def test_run_argv_without_command_limits_or_user_uses_the_images_own() -> None:
    argv, by_name = run_argv(ContainerRun(name="c", command=(), env={}, run_as=RunAs(1001, 1001)), IMAGE,
                             podman="/usr/bin/podman", init=False)
    assert argv == ["/usr/bin/podman", "run", "--name", "c", "--network", "host", "--log-driver", "passthrough",
                    "--stop-signal", "SIGTERM", "--pull", "never", "--user", "1001:1001", IMAGE]
    assert by_name == {}


@pytest.mark.parametrize(("run_as", "owner"), [
    (RunAs(107, None, 107), (107, 107)), (RunAs(107, 5, 107), (107, 5)), (RunAs(107), (107, -1)),
    (RunAs(None, None, 107), None)])
def test_a_device_goes_to_the_pods_user(run_as: RunAs, owner: tuple[int, int] | None) -> None:
    assert device_owner(run_as) == owner


def test_podman_state_is_parsed() -> None:
    inspect = [{"State": {"Status": "exited", "Running": False, "OOMKilled": True, "ExitCode": 137,
                          "StartedAt": "2026-12-02T06:04:58.36Z"}}]
    assert parse_state(json.dumps(inspect)) == ContainerState(False, 137, True, True)
    never = [{"State": {"Status": "created", "Running": False, "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z"}}]
    assert parse_state(json.dumps(never)) == ContainerState(False, 0, False, False)
    assert parse_state("[]") is None


@pytest.mark.parametrize(("log", "program", "message"), [
    ("ERROR (catatonit:6): failed to exec pid1: No such file or directory\n", "nosuch",
     'exec: "nosuch": executable file not found in $PATH'),
    ("ERROR (catatonit:6): failed to exec pid1: Permission denied\n", "/data/x", 'exec: "/data/x": Permission denied'),
    ('Error: runc: runc create failed: unable to start container process: exec: "nosuch": executable file not found '
     "in $PATH: OCI runtime attempted to invoke a command that was not found\n", "nosuch",
     'exec: "nosuch": executable file not found in $PATH'),
    ("importing...\nERROR (catatonit:6): failed to exec pid1: x\nthen it ran\n", "p", None),
    ("", "p", None),
])
def test_a_program_that_never_ran_is_found_in_the_end_of_the_log(log: str, program: str, message: str | None) -> None:
    assert start_error(log, program) == message


@pytest.mark.parametrize(("code", "runtime", "usage", "kills", "oom"), [
    (137, True, None, 0, True),  # podman saw it
    (137, False, MemoryUsage(600, 0, 1), 0, True),  # the cgroup counted it (cgroup v2, or v1 where it counts)
    (137, False, MemoryUsage(600, 42, 0), 1, True),  # SIGKILLed at its limit while the OOM killer struck
    (137, False, MemoryUsage(600, 42, 0), 0, False),  # at its limit (page cache reclaimed), killed by someone
    (137, False, MemoryUsage(100, 0, 0), 1, False),  # the OOM killer struck elsewhere
    (1, False, MemoryUsage(600, 42, 0), 1, False),
    (137, False, None, 1, False),
])
def test_oom_killed_verdict(code: int, runtime: bool, usage: MemoryUsage | None, kills: int, oom: bool) -> None:
    assert verdict(code, runtime, usage, kills) is oom


def test_podman_settings_are_image_sh_s() -> None:
    assert PodmanSettings.from_environment({"PYCDI_PODMAN_HOME": "/p", "HOME": "/h"}).home == Path("/p")
    assert PodmanSettings.from_environment({"XDG_CACHE_HOME": "/x", "HOME": "/h"}).home == Path("/x/pycdi/podman")
    settings = PodmanSettings.from_environment({"HOME": "/h"})
    assert settings.home == Path("/h/.cache/pycdi/podman")
    assert settings.environ({"PATH": "/bin", "SECRET": "s"}) == {
        "PATH": "/bin", "CONTAINERS_CONF": "/h/.cache/pycdi/podman/containers.conf",
        "CONTAINERS_STORAGE_CONF": "/h/.cache/pycdi/podman/storage.conf"}


async def test_the_runtime_is_chosen_by_what_the_machine_has(tmp_path: Path) -> None:
    unconfigured = PodmanSettings(tmp_path / "no-podman-here", podman="true")  # any program: podman need not be here
    assert await choose_launcher("process", unconfigured, IMAGE) is None
    assert await choose_launcher("auto", unconfigured, IMAGE) is None  # falls back to processes
    with pytest.raises(RuntimeUnavailable, match=r"cannot run: no podman configuration in .*: run `bash scripts/image\.sh` first"):
        await choose_launcher("container", unconfigured, IMAGE)
    missing = PodmanSettings(tmp_path, podman="no-such-podman-pycdi")
    with pytest.raises(RuntimeUnavailable, match="no-such-podman-pycdi is not installed"):
        await choose_launcher("container", missing, IMAGE)
