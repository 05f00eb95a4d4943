"""Clones on a real API server: `cdi controller` and `cdi node` against kube-apiserver (+ the
kube-controller-manager's PV binder and garbage collector), with the VolumeSnapshot CRDs installed.
A golden image imported over HTTP is cloned with each strategy — chosen through StorageClasses of the
node's CSI driver annotated `cdi.kubevirt.io/clone-strategy` — and restored from a VolumeSnapshot;
every clone has the source's bytes and leaves no temporary object behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cdi.kube import connect
from tests.e2e.test_datavolume_import import sha256_prefix
from tests.e2e.test_kubernetes import DV_API, _volume_of, _wait_succeeded, datavolume
from tests.support.catalog import ImageSet
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import KubeDeployment
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.slow
DRIVER = "local.csi.pycdi.io"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


def storage_class(name: str, strategy: str) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": {"cdi.kubevirt.io/clone-strategy": strategy}},
            "provisioner": DRIVER, "allowVolumeExpansion": True, "volumeBindingMode": "Immediate"}


def clone(name: str, namespace: str, source: dict[str, Any], class_name: str | None = None) -> dict[str, Any]:
    dv = datavolume(name, namespace, source, size="256Mi")
    if class_name:
        dv["spec"]["storage"]["storageClassName"] = class_name
    return dv


async def _until_resized(cluster: Any, namespace: str, claim: str, timeout: float = 60) -> None:
    """Until the claim shows no expansion under way (Resizing or FileSystemResizePending)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await cluster.get("v1", "PersistentVolumeClaim", claim, namespace)
        pending = {c.get("type") for c in (found.get("status") or {}).get("conditions") or ()} & {
            "Resizing", "FileSystemResizePending"}
        if not pending:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{claim} still {pending}"
        await asyncio.sleep(0.5)


async def _until_present(path: Path, timeout: float = 30) -> None:
    """Until `path` is there (a volume grown unmounted is mounted again on the host within seconds)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if path.exists() or asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(0.2)


async def test_clones_through_a_real_api_server(kube_control_plane: KubeCluster, tmp_path: Path, nginx: NginxServer,
                                                images: ImageSet) -> None:
    kubeconfig, namespace = kube_control_plane.kubeconfig_path, "e2e-clones"
    async with await connect(kubeconfig) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for name, strategy in (("clone-csi", "csi-clone"), ("clone-copy", "copy")):
            await cluster.create(storage_class(name, strategy))
        try:
            with KubeDeployment(kubeconfig, tmp_path / "node") as deployment:
                golden = datavolume("golden", namespace, {"http": {"url": nginx.url("disk.qcow2")}}, size="192Mi")
                golden["spec"]["storage"]["storageClassName"] = "clone-csi"  # a CSI clone stays in its class
                await cluster.create(golden)
                await _wait_succeeded(kubeconfig, namespace, ["golden"], deployment)
                await cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
                                      "metadata": {"name": "golden-snap", "namespace": namespace},
                                      "spec": {"source": {"persistentVolumeClaimName": "golden"}}})
                source = {"pvc": {"namespace": namespace, "name": "golden"}}
                for dv in (clone("by-snapshot", namespace, source),
                           clone("by-csi-clone", namespace, source, "clone-csi"),
                           clone("by-copy", namespace, source, "clone-copy"),
                           clone("from-snapshot", namespace, {"snapshot": {"namespace": namespace,
                                                                           "name": "golden-snap"}})):
                    await cluster.create(dv)
                names = ["by-snapshot", "by-csi-clone", "by-copy", "from-snapshot"]
                dvs = await _wait_succeeded(kubeconfig, namespace, names, deployment, timeout=300)
                chosen = {name: dvs[name]["metadata"]["annotations"].get("cdi.kubevirt.io/cloneType")
                          for name in names}
                assert chosen == {"by-snapshot": "snapshot", "by-csi-clone": "csi-clone", "by-copy": "copy",
                                  "from-snapshot": "snapshot"}
                for name in names:
                    # A clone bigger than its snapshot is expanded; where ext4 cannot grow mounted, the node grows
                    # it unmounted for a moment, which a reader of the host path (as here, not a pod) could see.
                    await _until_resized(cluster, namespace, name)
                    disk = await _volume_of(kubeconfig, namespace, name) / "disk.img"
                    await _until_present(disk)  # the growth may start after the claim last showed no condition
                    assert disk.exists(), (f"{name}: {disk} missing (mounted: {disk.parent.is_mount()}, holds: "
                                           f"{sorted(p.name for p in disk.parent.iterdir()) if disk.parent.is_dir() else '-'})"
                                           f"\n{deployment.logs()}")
                    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256, name

                async def leftovers() -> list[str]:
                    found = []
                    for api_version, kind in (("v1", "PersistentVolumeClaim"), ("v1", "Pod"),
                                              (SNAPSHOT_API, "VolumeSnapshot")):
                        items = (await cluster.list(api_version, kind, namespace)).items
                        found += [f"{kind}/{o['metadata']['name']}" for o in items
                                  if "cdi.kubevirt.io/OwnedByUID" in (o["metadata"].get("labels") or {})]
                    return found
                for _ in range(60):
                    if not await leftovers():
                        break
                    await asyncio.sleep(0.5)
                assert await leftovers() == [], deployment.logs()
                for name in names:
                    await cluster.delete(DV_API, "DataVolume", name, namespace)
                await cluster.delete(SNAPSHOT_API, "VolumeSnapshot", "golden-snap", namespace)
                await cluster.delete(DV_API, "DataVolume", "golden", namespace)
        finally:
            for name in ("clone-csi", "clone-copy"):
                await cluster.delete("storage.k8s.io/v1", "StorageClass", name)
            await cluster.delete("v1", "Namespace", namespace)
