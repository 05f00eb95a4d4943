"""A pod's volumes as paths on this machine: what kubelet's volume manager does, for the local node.

`prepare_volumes` reads what the pod's volumes name (claims and their PersistentVolumes, Secrets,
ConfigMaps) and returns a `LocalVolume` per volume: a claim is its bound PV's path (the provisioner's recorded
current path, the `pycdi.local/volume-path` annotation, which its `spec.csi` PVs carry; else
`spec.local.path`, as PVs of earlier versions and static local PVs have; else `spec.hostPath.path`), Block
when the claim asks for it; an emptyDir is a directory of the pod; a Secret or ConfigMap is materialised there
as one file per key (or per `items` entry) with `defaultMode`/`mode`, the way kubelet projects them (its
atomic-writer layout, `projection`), and `refresh_projections` brings them up to date under a running
container, as kubelet's periodic sync does (a rotated certificate reaches a running upload server). A
volume that cannot be set up raises `VolumeError`; the runner leaves the container ContainerCreating
and says why in a FailedMount event. `volume_files` is the pure half; `fetch_key_data` is also how
`starter` reads the objects env variables refer to.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods.layout import LocalVolume
from cdi.embedded.pods.node import ANN_VOLUME_PATH
from cdi.embedded.pods.paths import PodPaths
from cdi.embedded.pods.projection import project
from cdi.embedded.pods.spec import KeyToPath, PodInfo, Volume

KeyData = Mapping[str, bytes]
PROJECTED = ("secret", "configMap")


class VolumeError(Exception):
    """A volume cannot be set up (yet): kubelet's FailedMount."""


def key_data(obj: Object) -> dict[str, bytes]:
    """The keys of a Secret (`data`, base64; `stringData` if a writer left it) or ConfigMap
    (`data`, text; `binaryData`, base64) as bytes."""
    if obj.get("kind") == "Secret":
        decoded = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        return {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()} | decoded
    return ({k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            | {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})


async def fetch_key_data(cluster: Cluster, kind: str, namespace: str, name: str) -> KeyData | None:
    """A Secret's or ConfigMap's keys, or None when it does not exist."""
    try:
        return key_data(await cluster.get("v1", kind, name, namespace))
    except NotFound:
        return None


def volume_files(volume: Volume, data: KeyData) -> list[tuple[str, bytes, int]]:
    """(relative path, content, mode) of each file a Secret/ConfigMap volume shows; `VolumeError` for an
    item naming a missing key (unless optional) or an unsafe path."""
    items = volume.items or tuple(KeyToPath(key, key) for key in sorted(data))
    files: list[tuple[str, bytes, int]] = []
    for item in items:
        path = PurePosixPath(item.path)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise VolumeError(f'volume "{volume.name}": item path "{item.path}" must be relative and must not '
                              f"contain '..'")
        if item.key not in data:
            if volume.optional:
                continue
            raise VolumeError(f'MountVolume.SetUp failed for volume "{volume.name}": references non-existent '
                              f"{_what(volume)} key: {item.key}")
        files.append((str(path), data[item.key], volume.default_mode if item.mode is None else item.mode))
    return files


async def prepare_volumes(cluster: Cluster, pod: PodInfo, paths: PodPaths) -> dict[str, LocalVolume]:
    """Every volume of the pod, set up; Secrets and ConfigMaps are written afresh each time.

    The volumes are independent, so they are set up at once (an upload pod's two claims and its
    certificate Secret cost five reads and a projection; one after the other they took a third of a
    second of the pod's start on a busy machine). If several fail, the error of the first volume in the
    pod's order is raised, as it was when they were set up in turn."""
    results = await asyncio.gather(*(_prepare(cluster, pod, volume, paths) for volume in pod.volumes),
                                   return_exceptions=True)
    prepared: dict[str, LocalVolume] = {}
    for volume, result in zip(pod.volumes, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        prepared[volume.name] = result
    return prepared


async def _prepare(cluster: Cluster, pod: PodInfo, volume: Volume, paths: PodPaths) -> LocalVolume:
    if volume.kind == "persistentVolumeClaim":
        return await _claim(cluster, pod.namespace, volume)
    if volume.kind == "hostPath":
        return LocalVolume(Path(volume.ref))
    if volume.kind == "emptyDir":
        paths.volume(volume.name).mkdir(parents=True, exist_ok=True)
        return LocalVolume(paths.volume(volume.name))
    if volume.kind in PROJECTED:
        await _project(cluster, pod, volume, paths)
        return LocalVolume(paths.volume(volume.name), materialised=True)
    raise VolumeError(f'volume "{volume.name}": {volume.kind} volumes are not supported by the local pod runner')


async def refresh_projections(cluster: Cluster, pod: PodInfo, paths: PodPaths) -> list[str]:
    """Rewrite the pod's Secret and ConfigMap volumes whose objects changed; the names of those rewritten.
    A Secret that went away (or lost a key) leaves the files as they were, as kubelet keeps them."""
    changed = []
    for volume in pod.volumes:
        if volume.kind not in PROJECTED:
            continue
        try:
            if await _project(cluster, pod, volume, paths):
                changed.append(volume.name)
        except VolumeError:
            continue
    return changed


async def _project(cluster: Cluster, pod: PodInfo, volume: Volume, paths: PodPaths) -> bool:
    kind = "Secret" if volume.kind == "secret" else "ConfigMap"
    data = await fetch_key_data(cluster, kind, pod.namespace, volume.ref)
    if data is None and not volume.optional:
        raise VolumeError(f'MountVolume.SetUp failed for volume "{volume.name}": {_what(volume)} '
                          f'"{volume.ref}" not found')
    files = volume_files(volume, data or {})
    return await asyncio.to_thread(project, paths.volume(volume.name), files)


async def _claim(cluster: Cluster, namespace: str, volume: Volume) -> LocalVolume:
    try:
        claim = await cluster.get("v1", "PersistentVolumeClaim", volume.ref, namespace)
    except NotFound as e:
        raise VolumeError(f'persistentvolumeclaim "{volume.ref}" not found') from e
    pv_name = (claim.get("spec") or {}).get("volumeName")
    if (claim.get("status") or {}).get("phase") != "Bound" or not pv_name:
        raise VolumeError(f'persistentvolumeclaim "{volume.ref}" is not bound')
    try:
        pv = await cluster.get("v1", "PersistentVolume", pv_name)
    except NotFound as e:
        raise VolumeError(f'persistentvolume "{pv_name}" bound to claim "{volume.ref}" not found') from e
    path = pv_path(pv)
    if path is None:
        raise VolumeError(f'persistentvolume "{pv_name}" has no local path (annotation pycdi.local/volume-path, '
                          f'spec.local or spec.hostPath)')
    block = ((claim.get("spec") or {}).get("volumeMode") or (pv.get("spec") or {}).get("volumeMode")) == "Block"
    return LocalVolume(Path(path), block=block)


def pv_path(pv: Object) -> str | None:
    """Where a PersistentVolume is on this machine."""
    spec = pv.get("spec") or {}
    annotations = (pv.get("metadata") or {}).get("annotations") or {}
    for candidate in (annotations.get(ANN_VOLUME_PATH), (spec.get("local") or {}).get("path"),
                      (spec.get("hostPath") or {}).get("path")):
        if candidate:
            return str(candidate)
    return None


def _what(volume: Volume) -> str:
    return "secret" if volume.kind == "secret" else "configmap"
