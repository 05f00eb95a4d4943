"""The container runtime of the local pod runner: each container of a pod runs in the project's image
with podman.

`ContainerLauncher` is the `processes.Launcher` that `cdi serve --pod-runtime container` (or `auto`,
where podman works and the image is there) injects into the `PodRunner` instead of the process
launcher. It runs the `containerrun.ContainerRun` the starter attached to the `LaunchSpec` with the
podman settings of `scripts/image.sh` (`PodmanSettings`: the same private `containers.conf` and
`storage.conf`, written by that script, so the image it built is found). Per run it:

- removes a leftover container of the same name (a runner that died) and makes the run's memory
  cgroup (`cgroups`), which holds the pod's memory limit; gives Block volumes' device nodes to the
  pod's user for the run, as containerd's device_ownership_from_security_context does (podman copies
  the host node's owner into the container; the node is given back when the run ends);
- starts `podman run` attached, as its own process group dying with the runner like a process
  container; the container's stdout+stderr go straight into the pod's log file (passthrough);
- on `signal`, sends the signal to the container (`podman kill`), and SIGKILLs the podman client
  too if the container is not there yet, so a container deleted while being created never runs on;
- on `wait`, reads the exit code from `podman inspect` (waiting for the container if the client
  died first), decides OOMKilled (`cgroups.verdict`), keeps the run's memory figures in `usage`,
  and removes the container and its cgroup.

Orphans of a runner that died are found as for processes: the container's processes carry the
marker variables in their environment (`orphans`), and the next run of the same container removes
what podman still has. The process launcher stays for machines without podman (`probe` says why a
runtime cannot be used).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cdi.embedded.pods.cgroups import MemoryCgroup, MemoryUsage, verdict
from cdi.embedded.pods.containerrun import (
    LABEL_STATE_DIR,
    ContainerRun,
    container_name,
    device_owner,
    parse_state,
    run_argv,
    start_error,
)
from cdi.embedded.pods.processes import (
    RUNTIME_CONTAINER,
    START_FAILED_EXIT_CODE,
    ExitStatus,
    LaunchSpec,
    Process,
    ProcessLauncher,
    RunHandle,
    StartFailed,
    die_with_parent,
    exit_status,
    log_tail,
    oom_kills,
    signal_group,
)

log = logging.getLogger("cdi.pods.containers")

DEFAULT_IMAGE = "docker.io/pycdi/pycdi:latest"  # what scripts/image.sh tags every build as
MEMORY_MARGIN = 1 << 20  # the container's own limit above its cgroup's (see `cgroups`)
PODMAN_TIMEOUT = 60.0


@dataclass(frozen=True)
class PodmanSettings:
    """podman as scripts/image.sh runs it: the same private configuration files, hence the same storage."""

    home: Path
    podman: str = "podman"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> PodmanSettings:
        """The directory image.sh uses: PYCDI_PODMAN_HOME, else ${XDG_CACHE_HOME:-$HOME/.cache}/pycdi/podman."""
        if home := environ.get("PYCDI_PODMAN_HOME"):
            return cls(Path(home))
        cache = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
        return cls(Path(cache) / "pycdi" / "podman")

    @property
    def containers_conf(self) -> Path:
        return self.home / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.home / "storage.conf"

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """podman's environment: PATH from `base`, the configuration files; nothing else of ours."""
        environ = {"CONTAINERS_CONF": str(self.containers_conf), "CONTAINERS_STORAGE_CONF": str(self.storage_conf)}
        return {k: base[k] for k in ("PATH", "HOME") if k in base} | environ


async def podman(settings: PodmanSettings, *args: str, timeout: float = PODMAN_TIMEOUT) -> tuple[int, str, str]:
    """Run a podman command to its end: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        settings.podman, *args, env=settings.environ(os.environ), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return 124, "", f"podman {args[0]} timed out after {timeout:g} s"
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def probe(settings: PodmanSettings, image: str) -> str | None:
    """Why the container runtime cannot run pods here (None: it can)."""
    if shutil.which(settings.podman) is None:
        return f"{settings.podman} is not installed"
    if not settings.containers_conf.is_file() or not settings.storage_conf.is_file():
        return f"no podman configuration in {settings.home}: run `bash scripts/image.sh` first"
    code, _, err = await podman(settings, "image", "exists", image)
    if code != 0:
        return f"image {image} not found ({err.strip() or 'podman image exists: ' + str(code)}): " \
               f"build it with `bash scripts/image.sh`"
    return None


RUNTIMES = ("process", "container", "auto")


class RuntimeUnavailable(Exception):
    """`--pod-runtime container` was asked for where it cannot run."""


async def choose_launcher(runtime: str, settings: PodmanSettings, image: str) -> ContainerLauncher | None:
    """The launcher for `cdi serve --pod-runtime`: None for processes; podman's for "container" (or
    `RuntimeUnavailable` saying why not) and for "auto" where it can run (else processes, logged)."""
    if runtime == "process":
        return None
    why_not = await probe(settings, image)
    if why_not is None:
        log.info("worker pods run as containers of %s (podman settings in %s)", image, settings.home)
        return ContainerLauncher(settings, image)
    if runtime == "container":
        raise RuntimeUnavailable(f"the container pod runtime cannot run: {why_not}")
    log.info("worker pods run as processes: %s", why_not)
    return None


@dataclass(frozen=True)
class Owner:
    path: Path
    uid: int
    gid: int
    mode: int


class ContainerLauncher:
    """Starts containers with podman; `usage` keeps each finished run's memory figures by container name."""

    def __init__(self, settings: PodmanSettings, image: str = DEFAULT_IMAGE, *, cgroups: bool = True,
                 init: bool = True) -> None:
        self._settings = settings
        self._image = image
        self._cgroups = cgroups
        self._init = init
        self.usage: dict[str, MemoryUsage] = {}
        self._swept: set[str] = set()
        self._devices: dict[str, list[Owner]] = {}  # device nodes' owners before a run took them
        self._kills_before: dict[str, int | None] = {}

    @property
    def image(self) -> str:
        return self._image

    @property
    def settings(self) -> PodmanSettings:
        return self._settings

    async def start(self, spec: LaunchSpec) -> Process:
        run = spec.container
        if run is None:
            raise StartFailed("the container runtime was given no container to run")
        await self._sweep(run.labels.get(LABEL_STATE_DIR, ""))
        await podman(self._settings, "rm", "--force", "--ignore", run.name)
        cgroup = await asyncio.to_thread(MemoryCgroup.open, run.name, run.limits.memory) if self._cgroups else None
        margin = MEMORY_MARGIN if cgroup is not None and run.limits.memory is not None else 0
        argv, by_name = run_argv(run, self._image, podman=self._settings.podman,
                                 cgroup_parent=cgroup.parent if cgroup else "", memory_margin=margin, init=self._init)
        owners = self._devices[run.name] = await asyncio.to_thread(_prepare_mounts, run)
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        environ = self._settings.environ(os.environ) | by_name
        self._kills_before[run.name] = oom_kills()  # the kernel's count before the run: see `finish`
        with open(spec.log, "ab") as out:
            try:
                # In the pod's own directory: conmon leaves files in its working directory (an `oom` marker
                # when the container is OOM-killed), which must not land wherever `cdi serve` was started.
                spec.cwd.mkdir(parents=True, exist_ok=True)
                client = await asyncio.create_subprocess_exec(
                    *argv, env=environ, stdin=asyncio.subprocess.DEVNULL, stdout=out, cwd=spec.cwd,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent(os.getpid()))
            except OSError as e:
                if cgroup is not None:
                    await asyncio.to_thread(cgroup.remove)
                await asyncio.to_thread(_restore_owners, self._devices.pop(run.name, []))
                raise StartFailed(f'exec: "{self._settings.podman}": {e.strerror or e}') from e
        handle = RunHandle(RUNTIME_CONTAINER, name=run.name, program=run.command[0] if run.command else "",
                           memory_limit=run.limits.memory,
                           owners=tuple((str(o.path), o.uid, o.gid, o.mode) for o in owners))
        return ContainerProcess(self, handle, client, cgroup, spec.log)

    async def reattach(self, handle: RunHandle) -> Process | ExitStatus | None:
        """The container an earlier runner started, by name: still running (watched from now on), ended
        meanwhile (its exit code read and the container removed), or gone (None)."""
        if handle.runtime != RUNTIME_CONTAINER:
            return await ProcessLauncher().reattach(handle)  # started before containers could be used here
        if not handle.name:
            return None
        code, out, _ = await podman(self._settings, "inspect", "--type", "container", handle.name)
        if code != 0 or parse_state(out) is None:
            return None
        self._devices[handle.name] = [Owner(Path(path), uid, gid, mode) for path, uid, gid, mode in handle.owners]
        cgroup = MemoryCgroup.of(handle.name) if self._cgroups else None
        process = ContainerProcess(self, handle, None, cgroup, Path(os.devnull))
        state = parse_state(out)
        if state is not None and state.running:
            log.info("re-attached to container %s", handle.name)
            return process
        return await process.wait()

    async def _sweep(self, state_dir: str) -> None:
        """Once per runner's state directory: remove the stopped containers (and their cgroups) an earlier
        runner left (it died; the runner has killed their processes by their marker variables)."""
        if not state_dir or state_dir in self._swept:
            return
        self._swept.add(state_dir)
        code, out, _ = await podman(self._settings, "ps", "--all", "--filter", f"label={LABEL_STATE_DIR}={state_dir}",
                                    "--filter", "status=exited", "--filter", "status=created", "--format",
                                    "{{.Names}}")
        for name in out.split() if code == 0 else ():
            await podman(self._settings, "rm", "--force", "--ignore", name)
            await asyncio.to_thread(MemoryCgroup.of(name).remove)
            log.info("removed container %s, left by an earlier pod runner", name)

    async def finish(self, handle: RunHandle, client: asyncio.subprocess.Process | None, cgroup: MemoryCgroup | None,
                     log_file: Path) -> ExitStatus:
        """Wait for a run to end, read how it ended, and remove what is left of it. Without a client (a
        container an earlier runner started) it waits on podman alone."""
        name = handle.name
        kills_before = self._kills_before.pop(name, None)
        returncode = await client.wait() if client is not None else 0
        code, out, _ = await podman(self._settings, "inspect", "--type", "container", name)
        state = parse_state(out) if code == 0 else None
        if state is not None and state.running:  # the client died (or is an earlier runner's), the container did not
            await podman(self._settings, "wait", name, timeout=365 * 86400.0)
            code, out, _ = await podman(self._settings, "inspect", "--type", "container", name)
            state = parse_state(out) if code == 0 else state
        await podman(self._settings, "rm", "--force", "--ignore", name)
        usage = await asyncio.to_thread(cgroup.usage) if cgroup is not None else None
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
        await asyncio.to_thread(_restore_owners, self._devices.pop(name, []))
        if usage is not None:
            self.usage[name] = usage
            log.info("container %s: peak memory %d bytes, limit %s", name, usage.peak, handle.memory_limit)
        if state is None or not state.started or state.exit_code == 1:
            why = start_error(await asyncio.to_thread(log_tail, log_file), handle.program)
            if why is not None or state is None or not state.started:
                return ExitStatus(START_FAILED_EXIT_CODE, 0, False, "StartError",
                                  why or f"podman run failed ({exit_status(returncode).code}): see the log")
        after = oom_kills()
        global_kills = (after - kills_before) if after is not None and kills_before is not None else 0
        return ExitStatus(state.exit_code, 0, verdict(state.exit_code, state.oom_killed, usage, global_kills))


class ContainerProcess:
    """A container being run by a `podman run` client of ours, or re-attached to by name (no client)."""

    def __init__(self, launcher: ContainerLauncher, handle: RunHandle, client: asyncio.subprocess.Process | None,
                 cgroup: MemoryCgroup | None, log_file: Path) -> None:
        self._launcher = launcher
        self._handle = handle
        self._client = client
        self._cgroup = cgroup
        self._log = log_file
        self._ended: asyncio.Task[ExitStatus] | None = None

    @property
    def pid(self) -> int:
        """The podman client's pid, 0 without one (the container's processes live in their own pid namespace)."""
        return self._client.pid if self._client is not None else 0

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def container_id(self) -> str:
        return f"podman://{self._handle.name}"

    @property
    def handle(self) -> RunHandle:
        return self._handle

    async def signal(self, signum: int) -> None:
        if self._ended is not None and self._ended.done():
            return
        code, _, _ = await podman(self._launcher.settings, "kill", "--signal", str(signum), self._handle.name)
        if code != 0 and signum == signal.SIGKILL and self._client is not None and self._client.returncode is None:
            signal_group(self._client.pid, signal.SIGKILL)  # not created yet: stop the client creating it

    async def wait(self) -> ExitStatus:
        if self._ended is None:
            self._ended = asyncio.ensure_future(self._launcher.finish(self._handle, self._client, self._cgroup,
                                                                      self._log))
        return await asyncio.shield(self._ended)


def _prepare_mounts(run: ContainerRun) -> list[Owner]:
    """Mount sources must exist before podman binds them (kubelet creates a missing subPath too); device
    nodes go to the pod's user for the run (podman copies the host node's owner and mode into the
    container). Returns the nodes' owners before, for `_restore_owners`."""
    for mount in run.mounts:
        if not mount.host.exists():
            mount.host.mkdir(parents=True, exist_ok=True)
    owner = device_owner(run.run_as)
    if owner is None:
        return []
    before = []
    for device in run.devices:
        info = device.host.stat()
        before.append(Owner(device.host, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)))
        os.chown(device.host, owner[0], owner[1])
        os.chmod(device.host, 0o660)
    return before


def _restore_owners(owners: list[Owner]) -> None:
    """Give device nodes back once the run is over: the host's node must not stay the pod user's (the
    next volume attached at it may be someone else's)."""
    for owner in owners:
        try:
            os.chown(owner.path, owner.uid, owner.gid)
            os.chmod(owner.path, owner.mode)
        except OSError as e:
            log.warning("could not give %s back to %d:%d: %s", owner.path, owner.uid, owner.gid, e)


def usage_of(launcher: ContainerLauncher, pod_uid: str, container: str) -> MemoryUsage | None:
    """The memory figures of the last finished run of a pod's container."""
    return launcher.usage.get(container_name(pod_uid, container))

