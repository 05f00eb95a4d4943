"""Starting one container of a pod: the apply step that turns the pure layout and env into a process.

For a container about to run, `ContainerStarter.start` reads the Secrets and ConfigMaps its variables
name, resolves its environment (`envvars`), lays out its mounts (`layout`), builds its command line,
finds the program on PATH with the project's own `bin` directory (where `cdi-importer` lives) first,
lays out the container's root directory, gives it a fresh termination file, moves the last run's
log aside and launches it through the injected `Launcher`. The `LaunchSpec` also carries the container
as the pod sees it (`containerrun.container_run`: in-pod paths and variables, user, limits), which a
container launcher (`containers`) runs instead of the local command line. Failures surface as `EnvError`,
`LayoutError` (CreateContainerConfigError) or `StartFailed` (StartError). Called by the runner, which
prepares the pod's volumes (`volumes.prepare_volumes`) once before starting its containers.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from cdi.cluster.protocol import Cluster
from cdi.embedded.pods.containerrun import container_run
from cdi.embedded.pods.envvars import (
    EnvSources,
    command_line,
    image_entrypoint,
    pod_fields,
    process_env,
    referenced_objects,
    resolve_env,
)
from cdi.embedded.pods.layout import ContainerLayout, LocalVolume, container_layout
from cdi.embedded.pods.node import HOST_IP
from cdi.embedded.pods.orphans import markers
from cdi.embedded.pods.paths import PodPaths
from cdi.embedded.pods.processes import Launcher, LaunchSpec, Process, StartFailed, rotate_log
from cdi.embedded.pods.spec import ContainerSpec, PodInfo
from cdi.embedded.pods.volumes import fetch_key_data

# What a container inherits from the runner's environment; the rest of it stays out, as in a pod.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR")


def tools_dir() -> Path:
    """The project's `bin` directory: that of the Python running us (the venv's)."""
    return Path(sys.executable).parent


def default_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment variables every container gets, PATH with the project's `bin` first."""
    base = {name: environ[name] for name in INHERITED if name in environ}
    base["PATH"] = os.pathsep.join([str(tools_dir()), *(p for p in base.get("PATH", "").split(os.pathsep) if p)])
    return base


def find_program(word: str, search_path: str) -> str:
    """The program `word` names: a path as given when it exists, else looked up on `search_path`
    (by its base name, so "/usr/bin/cdi-importer" from an upstream pod spec finds ours)."""
    if "/" in word and os.access(word, os.X_OK) and not Path(word).is_dir():
        return word
    found = shutil.which(os.path.basename(word), path=search_path)
    if found is None:
        raise StartFailed(f'exec: "{word}": executable file not found in $PATH')
    return found


class ContainerStarter:
    def __init__(self, cluster: Cluster, state_dir: Path, launcher: Launcher, base_env: Mapping[str, str]) -> None:
        self._cluster = cluster
        self._state_dir = state_dir
        self._launcher = launcher
        self._base_env = dict(base_env)

    @property
    def launcher(self) -> Launcher:
        return self._launcher

    async def start(self, pod: PodInfo, container: ContainerSpec, volumes: Mapping[str, LocalVolume],
                    pod_ip: str, paths: PodPaths) -> Process:
        sources = EnvSources(
            objects={ref: await fetch_key_data(self._cluster, ref[0], pod.namespace, ref[1])
                     for ref in sorted(referenced_objects(container))},
            fields=pod_fields(pod, pod_ip, HOST_IP))
        own_env = resolve_env(container, sources, pod.namespace)
        layout = container_layout(container, volumes, root=paths.container_root(container.name),
                                  termination_file=paths.termination(container.name), pod_ip=pod_ip)
        argv = command_line(container, own_env, layout, image_entrypoint(container.image))
        if not argv:
            raise StartFailed("the container has neither a command nor an image naming a program")
        marks = markers(self._state_dir, pod.uid, container.name)
        environ = process_env(self._base_env, own_env, layout, marks)
        environ |= {"HOSTNAME": pod.name, "TMPDIR": str(paths.tmp)}
        run = container_run(pod, container, volumes, own_env=own_env, markers=marks,
                            termination_file=paths.termination(container.name), pod_ip=pod_ip,
                            devices=_device_nodes(container, volumes))
        # A program missing here is the process launcher's StartError only: a container's is in its image.
        not_found = ""
        try:
            argv[0] = find_program(argv[0], environ.get("PATH", ""))
        except StartFailed as e:
            not_found = str(e)
        cwd = _working_dir(container, layout, paths)
        _lay_out(layout, paths, container.name)
        return await self._launcher.start(LaunchSpec(argv, environ, cwd, paths.log(container.name), run, not_found,
                                                     paths.exit_file(container.name)))


def _device_nodes(container: ContainerSpec, volumes: Mapping[str, LocalVolume]) -> set[Path]:
    """The Block volume paths the container uses that are device nodes (not plain files)."""
    nodes = set()
    for device in container.devices:
        volume = volumes.get(device.name)
        if volume is None or not volume.block:
            continue
        try:
            info = volume.path.stat()
        except OSError:
            continue
        if stat.S_ISBLK(info.st_mode):
            nodes.add(volume.path)
    return nodes


def _working_dir(container: ContainerSpec, layout: ContainerLayout, paths: PodPaths) -> Path:
    if container.working_dir:
        local = layout.rewrite(container.working_dir)
        if local != container.working_dir:
            return Path(local)
    return paths.tmp


def _lay_out(layout: ContainerLayout, paths: PodPaths, name: str) -> None:
    """The container's root of mount-point links, a fresh termination file, and the log rotated."""
    shutil.rmtree(layout.root, ignore_errors=True)
    for link in layout.links:
        link.at.parent.mkdir(parents=True, exist_ok=True)
        if link.copy:
            shutil.copytree(link.target, link.at, copy_function=os.link)
        else:
            link.at.symlink_to(link.target)
    paths.tmp.mkdir(parents=True, exist_ok=True)
    layout.termination_file.parent.mkdir(parents=True, exist_ok=True)
    layout.termination_file.write_bytes(b"")
    rotate_log(paths.log(name), paths.log(name, previous=True))
