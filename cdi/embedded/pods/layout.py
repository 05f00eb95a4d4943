"""Where a container's in-pod paths are on this machine, and the variables that tell the process: a
pure, table-driven mapping from the pod's `volumeMounts`/`volumeDevices` to local paths.

A process cannot see `/data` or `/dev/cdi-block-volume`, so the runner points it at the real paths:

    in the pod                 variable                     on this machine
    /dev/cdi-block-volume      CDI_DATA_PATH                the bound PV's loop device (volumeDevices)
    /data                      CDI_DATA_PATH                the bound PV's directory (when no device)
    /scratch                   CDI_SCRATCH_PATH             the scratch PV's directory
    /extraheaders              CDI_EXTRA_HEADERS_DIR        a directory holding the /extraheaders/<n> mounts
    /proxycerts/               IMPORTER_PROXY_CERT_DIR      the ConfigMap volume's files
    terminationMessagePath     CDI_TERMINATION_LOG          $STATE/pods/<ns>/<pod>/termination/<container>
    (always)                   CDI_METRICS_ADDR             <podIP>:8443

A variable is set only for a path the container mounts: a pod without a scratch volume gets no
CDI_SCRATCH_PATH, and so no scratch space, whatever the host has at /scratch. Where the pod itself
names an unmounted path in CDI_DATA_PATH or CDI_SCRATCH_PATH, `confine` maps it into the
container's own root, as a container's filesystem would hold it, never onto the host's directory.

And, generally, an env value or command word equal to or under a mount path is rewritten to the
local path (`IMPORTER_CERT_DIR=/certs` → the CA ConfigMap's files). A path that is a parent of mount
points but no mount itself (`/extraheaders` with `/extraheaders/0` mounted) maps into the
container's root directory, where `links` places every mount point: a symlink to a live volume
(claims, emptyDir), or a hard-linked copy of a materialised Secret/ConfigMap (the importer walks
these trees without following directory symlinks). `starter` creates the links.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.embedded.pods.spec import ContainerSpec

METRICS_PORT = 8443

# In-pod paths our variables point a process at; the first path a container has wins a variable.
WELL_KNOWN_PATHS: tuple[tuple[str, str], ...] = (
    (env.DEFAULT_BLOCK_PATH, env.DATA_PATH),
    (env.DEFAULT_DATA_DIR, env.DATA_PATH),
    (env.DEFAULT_SCRATCH_DIR, env.SCRATCH_PATH),
    (env.DEFAULT_EXTRA_HEADERS_DIR, env.EXTRA_HEADERS_DIR),
    (env.DEFAULT_PROXY_CERT_DIR, env.PROXY_CERT_DIR),
)


# Variables naming a volume: a value outside every mount must not reach the host path of that name.
CONFINED_VARIABLES: tuple[str, ...] = (env.DATA_PATH, env.SCRATCH_PATH)


class LayoutError(ValueError):
    """The container's mounts do not fit its pod's volumes."""


@dataclass(frozen=True)
class LocalVolume:
    """A pod volume as it exists here: a directory or device, and whether the runner wrote its content."""

    path: Path
    block: bool = False
    materialised: bool = False


@dataclass(frozen=True)
class Link:
    """A mount point in the container's root: `at` should show `target` (a copy when `copy`)."""

    at: Path
    target: Path
    copy: bool = False


@dataclass(frozen=True)
class ContainerLayout:
    root: Path
    termination_path: str
    termination_file: Path
    mounts: tuple[tuple[str, Path], ...]  # (in-pod path without trailing "/", local path), longest first
    links: tuple[Link, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # our variables, from WELL_KNOWN_PATHS and the pod IP

    def rewrite(self, value: str) -> str:
        """`value` with an in-pod path prefix replaced by its local path; anything else unchanged."""
        if not value.startswith("/") or value.strip("/") == "":
            return value
        if value == self.termination_path:
            return str(self.termination_file)
        trailing = "/" if value.endswith("/") else ""
        path = value.rstrip("/")
        for in_pod, local in self.mounts:
            if path == in_pod or path.startswith(in_pod + "/"):
                return str(local) + path[len(in_pod):] + trailing
        if any(in_pod.startswith(path + "/") for in_pod, _ in self.mounts):
            return str(self.root) + path + trailing
        return value

    def confine(self, value: str) -> str:
        """`rewrite`, but an absolute path under no mount lands in the container's root (where nothing
        is unless a mount put it there), not on the host."""
        local = self.rewrite(value)
        if local == value and value.startswith("/") and value.strip("/"):
            return str(self.root) + value
        return local


def container_layout(container: ContainerSpec, volumes: Mapping[str, LocalVolume], *, root: Path,
                     termination_file: Path, pod_ip: str) -> ContainerLayout:
    """The layout of `container`, given where its pod's volumes are; `LayoutError` on a mismatch."""
    mounts: list[tuple[str, Path, bool]] = []
    for mount in container.mounts:
        volume = _volume(volumes, mount.name, mount.mount_path)
        if volume.block:
            raise LayoutError(f'volume "{mount.name}" has volumeMode Block: it can be used in volumeDevices, '
                              f"not volumeMounts")
        mounts.append((mount.mount_path, volume.path / mount.sub_path if mount.sub_path else volume.path,
                       volume.materialised))
    for device in container.devices:
        volume = _volume(volumes, device.name, device.device_path)
        if not volume.block:
            raise LayoutError(f'volume "{device.name}" has volumeMode Filesystem: it can be used in volumeMounts, '
                              f"not volumeDevices")
        mounts.append((device.device_path, volume.path, False))
    ordered = sorted(((_normal(p), local, copy) for p, local, copy in mounts), key=lambda m: (-len(m[0]), m[0]))
    layout = ContainerLayout(root=root, termination_path=container.termination_message_path,
                             termination_file=termination_file,
                             mounts=tuple((in_pod, local) for in_pod, local, _ in ordered),
                             links=_links(root, ordered))
    derived: dict[str, str] = {}
    for in_pod, variable in WELL_KNOWN_PATHS:
        local = layout.rewrite(in_pod)
        if local != in_pod:
            derived.setdefault(variable, local)
    derived[env.TERMINATION_LOG] = str(termination_file)
    if pod_ip:
        derived[env.METRICS_ADDR] = f"{pod_ip}:{METRICS_PORT}"
    return replace(layout, env=derived)


def _volume(volumes: Mapping[str, LocalVolume], name: str, in_pod: str) -> LocalVolume:
    if not in_pod.startswith("/"):
        raise LayoutError(f'mount path "{in_pod}" of volume "{name}" must be absolute')
    volume = volumes.get(name)
    if volume is None:
        raise LayoutError(f'volume "{name}" mounted at {in_pod} is not a volume of the pod')
    return volume


def _normal(in_pod: str) -> str:
    return in_pod.rstrip("/") or "/"


def _links(root: Path, mounts: list[tuple[str, Path, bool]]) -> tuple[Link, ...]:
    """A link per mount point, except under another mount point (it would land inside that volume)."""
    paths = [in_pod for in_pod, _, _ in mounts]
    return tuple(sorted(
        (Link(root / in_pod.lstrip("/"), local, copy) for in_pod, local, copy in mounts
         if in_pod != "/" and not any(other != in_pod and in_pod.startswith(other.rstrip("/") + "/")
                                      for other in paths)),
        key=lambda link: str(link.at)))
