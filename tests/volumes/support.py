"""Helpers for the volume tests: manifests, a fake clock, driving reconcilers to a fixed point, and
releasing every mount and loop device a test left under its pool directory."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.volumes import pv_path
from cdi.embedded.volumes.commands import mounts_under, parse_mountinfo
from cdi.embedded.volumes.provisioner import ClaimReconciler
from cdi.embedded.volumes.reclaimer import VolumeReconciler
from cdi.runtime.types import Key

MIB = 1024 * 1024
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Both clock shapes: callable (the store, events) and `now()`/`monotonic()` (the runtime's Clock)."""

    def __init__(self) -> None:
        self.moment = START
        self.ticks = 0.0

    def __call__(self) -> datetime:
        return self.moment

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
        self.ticks += seconds


def pvc(name: str, size: str = "16Mi", *, namespace: str = "default", storage_class: str | None = "local",
        volume_mode: str | None = None, volume_name: str | None = None, access_modes: tuple[str, ...] = ("ReadWriteOnce",),
        annotations: dict[str, str] | None = None, **spec: Any) -> Object:
    body: Object = {"accessModes": list(access_modes), "resources": {"requests": {"storage": size}}, **spec}
    if storage_class is not None:
        body["storageClassName"] = storage_class
    if volume_mode is not None:
        body["volumeMode"] = volume_mode
    if volume_name is not None:
        body["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}, "spec": body}


def static_pv(name: str, path: str, size: str = "32Mi", *, storage_class: str = "manual", volume_mode: str = "Filesystem",
              reclaim: str = "Retain") -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "volumeMode": volume_mode,
                     "storageClassName": storage_class, "persistentVolumeReclaimPolicy": reclaim,
                     "local": {"path": path}}}


def storage_class(name: str, *, provisioner: str = "pycdi.local/hostpath", binding: str = "Immediate",
                  reclaim: str = "Delete", default: bool = False, **fields: Any) -> Object:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations}, "provisioner": provisioner,
            "volumeBindingMode": binding, "reclaimPolicy": reclaim, **fields}


async def current_version(cluster: EmbeddedCluster) -> str:
    """The store's newest resourceVersion: it changes whenever anything at all is written."""
    return (await cluster.list("v1", "Namespace")).resource_version


async def settle(cluster: EmbeddedCluster, claims: ClaimReconciler, volumes: VolumeReconciler,
                 rounds: int = 10) -> int:
    """Reconcile every claim and volume until a whole round writes nothing; returns the rounds it took."""
    for done in range(1, rounds + 1):
        before = await current_version(cluster)
        for obj in (await cluster.list("v1", "PersistentVolumeClaim")).items:
            await claims.reconcile(Key.of(obj))
        for obj in (await cluster.list("v1", "PersistentVolume")).items:
            await volumes.reconcile(Key.of(obj))
        if await current_version(cluster) == before:
            return done
    raise AssertionError(f"claims and volumes still changing after {rounds} rounds")


async def events_about(cluster: EmbeddedCluster, name: str, namespace: str = "default") -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about the object `name`, oldest first."""
    items = (await cluster.list("v1", "Event", namespace)).items
    return [(event["type"], event["reason"], event["message"]) for event in
            sorted(items, key=lambda event: int(event["metadata"]["resourceVersion"]))
            if event["involvedObject"]["name"] == name]


def volume_path(pv: Object) -> str:
    """Where a PV's volume is on this machine, as the pod runner finds it."""
    path = pv_path(pv)
    assert path is not None, f"no path on PV {pv['metadata']['name']}"
    return path


def mounted_at(path: str) -> str | None:
    """The filesystem type mounted exactly at `path`, if any."""
    found = None
    for entry in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if entry.mount_point == path:
            found = entry.fs_type
    return found


def loop_devices_of(image: Path) -> list[str]:
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME", "--associated", str(image)],
                            capture_output=True, text=True, check=False)
    return listed.stdout.split()


def block_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def release_everything(root: Path) -> list[str]:
    """Unmount everything under `root` and detach every loop device backed by a file under it; returns
    what it had to release (empty when the code under test cleaned up after itself)."""
    root = root.resolve()
    released = []
    listing = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], capture_output=True,
                             text=True, check=False)
    # listed before anything is unmounted: the volume images of a reflink pool are on a filesystem under
    # `root`, and once that is (lazily) unmounted the kernel names them relative to it ("/images/...")
    devices = [str(device["name"]) for device in json.loads(listing.stdout or "{}").get("loopdevices", [])
               if str(device.get("back-file") or "").startswith(str(root) + "/")]
    pool_filesystems = []
    for entry in mounts_under(parse_mountinfo(Path("/proc/self/mountinfo").read_text()), str(root)):
        if subprocess.run(["umount", entry.mount_point], capture_output=True, check=False).returncode != 0:
            pool_filesystems.append(entry.mount_point)  # busy: its images are still attached
        released.append(entry.mount_point)
    for device in devices:
        subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)
        released.append(device)
    for mount_point in pool_filesystems:
        if subprocess.run(["umount", mount_point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
    return released


def unmount(path: str) -> None:
    subprocess.run(["umount", path], check=True)


def detach(device: str) -> None:
    subprocess.run(["losetup", "--detach", device], check=True)


def attach_at(device: str, image: Path) -> None:
    """Attach `image` to the given loop device (to occupy a number another volume had)."""
    subprocess.run(["losetup", device, str(image)], check=True)


def backing_files() -> list[str]:
    """The backing files of every attached loop device."""
    listing = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], capture_output=True,
                             text=True, check=True)
    return [str(device.get("back-file") or "") for device in json.loads(listing.stdout or "{}").get("loopdevices", [])]
