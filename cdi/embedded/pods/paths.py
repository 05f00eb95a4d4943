"""Where the local pod runner keeps each pod's files under its state directory.

    $STATE/pods/<namespace>/<name>/
        uid                              the pod this directory belongs to (a re-created pod wipes it)
        <container>.log                  stdout+stderr of the current run (`cdi logs`)
        <container>.previous.log         ... of the run before (`cdi logs --previous`)
        termination/<container>          the container's terminationMessagePath
        runs/<container>.json            the running container's handle, to re-attach after a restart
        exits/<container>                its exit status, written by the process launcher's shim
        volumes/<volume>/                emptyDir, and Secret/ConfigMap volumes materialised as files
        root/<container>/...             the container's mount points as links (see `layout`)
        tmp/                             TMPDIR and working directory

The runner (`runner`, `starter`) creates and removes these; the CLI calls `log_path` for `cdi logs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def log_path(state_dir: Path, namespace: str, name: str, container: str, previous: bool = False) -> Path:
    """The log file of a container of a pod, or of its previous run."""
    suffix = ".previous.log" if previous else ".log"
    return pod_dir(state_dir, namespace, name) / f"{container}{suffix}"


def pod_dir(state_dir: Path, namespace: str, name: str) -> Path:
    return Path(state_dir) / "pods" / namespace / name


@dataclass(frozen=True)
class PodPaths:
    """The files of one pod."""

    state_dir: Path
    namespace: str
    name: str

    @property
    def root(self) -> Path:
        return pod_dir(self.state_dir, self.namespace, self.name)

    @property
    def uid_file(self) -> Path:
        return self.root / "uid"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def log(self, container: str, previous: bool = False) -> Path:
        return log_path(self.state_dir, self.namespace, self.name, container, previous)

    def termination(self, container: str) -> Path:
        return self.root / "termination" / container

    def run_record(self, container: str) -> Path:
        return self.root / "runs" / f"{container}.json"

    def exit_file(self, container: str) -> Path:
        return self.root / "exits" / container

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    def container_root(self, container: str) -> Path:
        return self.root / "root" / container
