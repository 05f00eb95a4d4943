"""A pod's container as a `podman run`: the pure half of the container runtime.

`container_run` turns a container of a pod (its in-pod command, environment and mounts, the pod's
user and limits) into a `ContainerRun`, which `starter` attaches to the `LaunchSpec` it builds for
every container; the process launcher ignores it, `containers.ContainerLauncher` runs it. Unlike the
process layout (`layout`), nothing is rewritten: the container sees the pod's own paths, because
each volume is mounted at its real mountPath (Filesystem volumes bound, Block volumes as devices
unless the volume is a plain file, which is bound at the device path instead).

`run_argv` is the exact command line, table-tested: `--network host` (the controllers reach the
pod's podIP on loopback as today), the pod's user (`--user`, `--group-add` for fsGroup),
`--memory`/`--cpus` from
the limits, `--init` so that SIGTERM reaches a program that installed no handler (it is not PID 1),
and `--log-driver passthrough` so the container writes straight into the log the launcher opened.
Variables are passed by name (`-e NAME`, the value in podman's environment), so Secret values do
not show in the host's process list; the few names podman itself reads are passed inline.
`parse_state` reads `podman inspect`'s State; `start_error` finds, in the end of the log, why the
program never ran (catatonit, podman's `--init`, could not execute it; or runc could not), which the
runner reports as kubelet does: StartError, exit code 128.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.embedded.pods.envvars import expand, image_entrypoint
from cdi.embedded.pods.layout import METRICS_PORT, WELL_KNOWN_PATHS, LayoutError, LocalVolume
from cdi.embedded.pods.node import MARKER_STATE_DIR
from cdi.embedded.pods.spec import ContainerSpec, Limits, PodInfo, RunAs

# podman reads these from its own environment: a pod variable of that name goes inline instead.
PODMAN_OWN_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
                                  "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"})
LABEL_POD_UID = "pycdi.local/pod-uid"
LABEL_STATE_DIR = "pycdi.local/state-dir"


@dataclass(frozen=True)
class Mount:
    """`host` shown at `target` in the container; `own`: handed to the container's user (podman's `:U`)."""

    target: str
    host: Path
    read_only: bool = False
    own: bool = False


@dataclass(frozen=True)
class Device:
    target: str
    host: Path


@dataclass(frozen=True)
class ContainerRun:
    name: str  # the podman container's name
    command: tuple[str, ...]  # program and arguments; empty: the image's entrypoint
    env: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    devices: tuple[Device, ...] = ()
    run_as: RunAs = field(default_factory=RunAs)
    limits: Limits = field(default_factory=Limits)
    workdir: str = ""
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def container_name(pod_uid: str, container: str) -> str:
    return f"pycdi-{pod_uid}-{container}"


def container_run(pod: PodInfo, container: ContainerSpec, volumes: Mapping[str, LocalVolume], *,
                  own_env: Mapping[str, str], markers: Mapping[str, str], termination_file: Path, pod_ip: str,
                  devices: Collection[Path] = ()) -> ContainerRun:
    """The container as podman should run it. `devices` are the Block volume paths that are device nodes
    (any other Block volume is a plain file)."""
    mounts: list[Mount] = []
    nodes: list[Device] = []
    for mount in container.mounts:
        volume = _volume(volumes, mount.name, mount.mount_path)
        if volume.block:
            raise LayoutError(f'volume "{mount.name}" has volumeMode Block: it can be used in volumeDevices, '
                              f"not volumeMounts")
        source = pod.volume(mount.name)
        own = source is not None and source.kind != "hostPath"
        host = volume.path / mount.sub_path if mount.sub_path else volume.path
        mounts.append(Mount(mount.mount_path, host, mount.read_only, own))
    for device in container.devices:
        volume = _volume(volumes, device.name, device.device_path)
        if not volume.block:
            raise LayoutError(f'volume "{device.name}" has volumeMode Filesystem: it can be used in volumeMounts, '
                              f"not volumeDevices")
        if volume.path in devices:
            nodes.append(Device(device.device_path, volume.path))
        else:
            mounts.append(Mount(device.device_path, volume.path, own=True))
    mounts.append(Mount(container.termination_message_path, termination_file, own=True))
    variables = {env.TERMINATION_LOG: container.termination_message_path}
    targets = [m.target.rstrip("/") for m in mounts] + [d.target.rstrip("/") for d in nodes]
    for in_pod, variable in WELL_KNOWN_PATHS:  # as the process runner sets them, with the pod's own paths
        path = in_pod.rstrip("/")
        if any(t == path or t.startswith(path + "/") for t in targets):
            variables.setdefault(variable, in_pod)
    if pod_ip:
        variables[env.METRICS_ADDR] = f"{pod_ip}:{METRICS_PORT}"
    variables |= dict(own_env)
    words = [*(container.command or image_entrypoint(container.image)), *container.args]
    return ContainerRun(
        name=container_name(pod.uid, container.name), command=tuple(expand(w, own_env) for w in words),
        env=variables | dict(markers), mounts=tuple(mounts), devices=tuple(nodes), run_as=pod.run_as(container),
        limits=container.limits, workdir=container.working_dir, hostname=pod.name,
        labels={LABEL_POD_UID: pod.uid, **({LABEL_STATE_DIR: markers[MARKER_STATE_DIR]}
                                           if MARKER_STATE_DIR in markers else {})})


def run_argv(run: ContainerRun, image: str, *, podman: str = "podman", cgroup_parent: str = "",
             memory_margin: int = 0, init: bool = True) -> tuple[list[str], dict[str, str]]:
    """`podman run …` for `run`, and the variables it passes by name (for podman's environment).
    `memory_margin` raises the container's own memory limit above the pod cgroup's (see `containers`)."""
    argv = [podman, "run", "--name", run.name, "--network", "host", "--log-driver", "passthrough",
            "--stop-signal", "SIGTERM", "--pull", "never"]
    if init:
        argv.append("--init")
    if run.hostname:
        argv += ["--hostname", run.hostname]
    if cgroup_parent:
        argv += ["--cgroup-parent", cgroup_parent]
    argv += _user_args(run.run_as)
    if run.limits.memory is not None:
        memory = str(run.limits.memory + memory_margin)
        argv += ["--memory", memory, "--memory-swap", memory]
    if run.limits.cpu is not None:
        argv += ["--cpus", f"{run.limits.cpu:g}"]
    for mount in run.mounts:
        options = ",".join(o for o, on in (("ro", mount.read_only), ("U", mount.own)) if on)
        argv += ["--volume", f"{mount.host}:{mount.target}" + (f":{options}" if options else "")]
    for device in run.devices:
        argv += ["--device", f"{device.host}:{device.target}:rwm"]
    by_name: dict[str, str] = {}
    for name, value in run.env.items():
        if name in PODMAN_OWN_VARIABLES or "=" in name:
            argv += ["--env", f"{name}={value}"]
        else:
            argv += ["--env", name]
            by_name[name] = value
    for key, value in sorted(run.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if run.workdir:
        argv += ["--workdir", run.workdir]
    if run.command:
        argv += ["--entrypoint", run.command[0], image, *run.command[1:]]
    else:
        argv.append(image)
    return argv, by_name


def _user_args(run_as: RunAs) -> list[str]:
    args: list[str] = []
    if run_as.user is not None:
        args += ["--user", str(run_as.user) if run_as.group is None else f"{run_as.user}:{run_as.group}"]
    if run_as.fs_group is not None:
        args += ["--group-add", str(run_as.fs_group)]
    return args


def device_owner(run_as: RunAs) -> tuple[int, int] | None:
    """Who should own a Block volume's device node (uid, gid; -1 keeps one), as containerd's
    device_ownership_from_security_context gives it: the pod's user and group (fsGroup when no group);
    None when the pod names no user (the image's, which we do not know)."""
    if run_as.user is None:
        return None
    group = run_as.group if run_as.group is not None else run_as.fs_group
    return run_as.user, -1 if group is None else group


@dataclass(frozen=True)
class ContainerState:
    """What `podman inspect` says about a container that ran."""

    running: bool
    exit_code: int
    oom_killed: bool
    started: bool = True


def parse_state(inspect_json: str) -> ContainerState | None:
    """The State of the first container in `podman inspect`'s JSON output (None when there is none)."""
    entries = json.loads(inspect_json or "[]")
    if not entries:
        return None
    state = entries[0].get("State") or {}
    started = not str(state.get("StartedAt") or "0001").startswith("0001")
    return ContainerState(bool(state.get("Running")), int(state.get("ExitCode") or 0),
                          bool(state.get("OOMKilled")), started)


_INIT_EXEC_FAILED = re.compile(r"^ERROR \(catatonit:\d+\): failed to exec pid1: (?P<why>.+)$")
_RUNTIME_EXEC_FAILED = re.compile(r"^Error: .*?(?P<why>exec: .+?)(: OCI runtime .*)?$")


def start_error(log_tail: str, program: str) -> str | None:
    """Why `program` was never executed, when the last line of the container's log says so."""
    lines = [line for line in log_tail.splitlines() if line.strip()]
    if not lines:
        return None
    if match := _INIT_EXEC_FAILED.match(lines[-1]):
        why = match["why"]
        if why == "No such file or directory" and "/" not in program:
            why = "executable file not found in $PATH"
        return f'exec: "{program}": {why}'
    if match := _RUNTIME_EXEC_FAILED.match(lines[-1]):
        return match["why"]
    return None


def _volume(volumes: Mapping[str, LocalVolume], name: str, in_pod: str) -> LocalVolume:
    if not in_pod.startswith("/"):
        raise LayoutError(f'mount path "{in_pod}" of volume "{name}" must be absolute')
    volume = volumes.get(name)
    if volume is None:
        raise LayoutError(f'volume "{name}" mounted at {in_pod} is not a volume of the pod')
    return volume
