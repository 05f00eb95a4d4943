"""Manifests and polling helpers for the pod runner tests.

Tests drive the runner by calling `reconcile` directly (no manager), so `settle` plays the work queue:
reconcile, read the pod back, repeat until the pod is in the state the test waits for.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods.runner import PodRunner
from cdi.runtime.types import Key

NAMESPACE = "default"

# Runs a test once with each launcher: processes, and podman containers in the project's image.
both_runtimes = pytest.mark.parametrize("pod_runtime", ["process", "container"])


def exchange(tmp_path: Path) -> tuple[Path, Object, Object]:
    """A directory the test and a pod's container both see at the same path: (path, the pod's hostPath
    volume, the container's mount). It is world-writable, for a container's unprivileged user."""
    path = tmp_path / "exchange"
    path.mkdir()
    os.chmod(path, 0o777)
    return path, {"name": "exchange", "hostPath": {"path": str(path)}}, {"name": "exchange", "mountPath": str(path)}


def py(code: str) -> list[str]:
    """A container command running `code` with the project's Python (found on PATH as `python`)."""
    return ["python", "-c", code]


def container(name: str = "main", command: list[str] | None = None, **fields: Any) -> Object:
    return {"name": name, "image": "quay.io/example/tool:v1", "command": command or py("pass"), **fields}


def pod(name: str, *containers: Object, restart_policy: str = "Never", volumes: list[Object] | None = None,
        namespace: str = NAMESPACE, **spec: Any) -> Object:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": restart_policy, "containers": list(containers) or [container()],
                     "volumes": volumes or [], **spec}}


def secret(name: str, data: dict[str, bytes], namespace: str = NAMESPACE) -> Object:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def config_map(name: str, data: dict[str, str], namespace: str = NAMESPACE) -> Object:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def storage_class(name: str, binding_mode: str = "WaitForFirstConsumer") -> Object:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "pycdi.local/hostpath", "volumeBindingMode": binding_mode}


def claim(name: str, storage_class_name: str = "local", mode: str = "Filesystem",
          namespace: str = NAMESPACE) -> Object:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class_name, "volumeMode": mode,
                     "resources": {"requests": {"storage": "1Gi"}}}}


async def bind(cluster: Cluster, claim_name: str, path: Path, namespace: str = NAMESPACE) -> None:
    """Do what the provisioner does: a PV at `path` (spec.local.path), the claim Bound to it."""
    pvc = await cluster.get("v1", "PersistentVolumeClaim", claim_name, namespace)
    pv_name = f"pvc-{pvc['metadata']['uid']}"
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
                          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                   "volumeMode": pvc["spec"].get("volumeMode", "Filesystem"),
                                   "local": {"path": str(path)},
                                   "claimRef": {"name": claim_name, "namespace": namespace}}})
    await cluster.patch("v1", "PersistentVolumeClaim", claim_name, {"spec": {"volumeName": pv_name}}, namespace)
    await cluster.patch_status("v1", "PersistentVolumeClaim", claim_name, {"status": {"phase": "Bound"}}, namespace)


async def get_pod(cluster: Cluster, name: str, namespace: str = NAMESPACE) -> Object | None:
    try:
        return await cluster.get("v1", "Pod", name, namespace)
    except NotFound:
        return None


async def settle(runner: PodRunner, cluster: Cluster, name: str, until: Callable[[Object | None], bool], *,
                 namespace: str = NAMESPACE, timeout: float = 20.0) -> Object | None:
    """Reconcile the pod until `until(pod)` holds; the pod as it then is (None once it is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await runner.reconcile(Key(namespace, name))
        current = await get_pod(cluster, name, namespace)
        if until(current):
            return current
        if loop.time() > deadline:
            status = current.get("status") if current else "gone"
            raise AssertionError(f"pod {namespace}/{name} did not settle; last status: {status}")
        await asyncio.sleep(0.05)


def phase(*wanted: str) -> Callable[[Object | None], bool]:
    return lambda p: p is not None and (p.get("status") or {}).get("phase") in wanted


def container_status(p: Object | None, name: str = "main") -> Object:
    assert p is not None
    return next(s for s in p["status"]["containerStatuses"] if s["name"] == name)


def waiting_reason(reason: str, name: str = "main") -> Callable[[Object | None], bool]:
    def check(p: Object | None) -> bool:
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        return any(s["name"] == name and s["state"].get("waiting", {}).get("reason") == reason for s in statuses)
    return check


def running(name: str = "main", restarts: int = 0) -> Callable[[Object | None], bool]:
    def check(p: Object | None) -> bool:
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        return any(s["name"] == name and "running" in s["state"] and s["restartCount"] >= restarts
                   for s in statuses)
    return check


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not alive(pid)


async def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if path.exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not appear within {timeout:g} s")
