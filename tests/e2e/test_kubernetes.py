"""End to end on a real API server: `cdi controller` and `cdi node` against a freshly started
kube-apiserver (+ kube-controller-manager) with CDI's CRDs import a qcow2 over HTTP, a registry image and a
blank disk into DataVolumes that reach Succeeded with the right bytes on their volumes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi.embedded.pods.volumes import pv_path
from cdi.kube import connect
from tests.e2e.test_datavolume_import import sha256_prefix
from tests.registry import images as oci
from tests.support.catalog import ImageSet
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import KubeDeployment
from tests.support.nginx import NginxServer
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.slow
DV_API = "cdi.kubevirt.io/v1beta1"


def datavolume(name: str, namespace: str, source: dict[str, Any], size: str = "128Mi") -> dict[str, Any]:
    return {"apiVersion": DV_API, "kind": "DataVolume", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": source, "storage": {"resources": {"requests": {"storage": size}}}}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, images: ImageSet) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("kube-registry"), tmp_path_factory.mktemp("kube-registry-work")
                        ) as plain:
        disk = oci.layer({"disk/disk.qcow2": images.path("disk.qcow2")})
        oci.Pusher(plain.base_url).image("disks/fedora", "latest", oci.image([disk]))
        yield plain


async def _volume_of(kubeconfig: Path, namespace: str, claim: str) -> Path:
    async with await connect(kubeconfig) as cluster:
        pvc = await cluster.get("v1", "PersistentVolumeClaim", claim, namespace)
        pv = await cluster.get("v1", "PersistentVolume", pvc["spec"]["volumeName"])
        return Path(pv_path(pv) or "")


async def _wait_succeeded(kubeconfig: Path, namespace: str, names: list[str], deployment: KubeDeployment,
                          timeout: float = 240) -> dict[str, dict[str, Any]]:
    async with await connect(kubeconfig) as cluster:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            listed = {dv["metadata"]["name"]: dv for dv in (await cluster.list(DV_API, "DataVolume", namespace)).items}
            phases = {name: (listed.get(name, {}).get("status") or {}).get("phase") for name in names}
            if all(phase == "Succeeded" for phase in phases.values()):
                return listed
            assert "Failed" not in phases.values(), f"{phases}\n{deployment.logs()}"
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"DataVolumes not Succeeded: {phases}\n{deployment.logs()}")
            await asyncio.sleep(1)


async def test_imports_through_a_real_api_server(kube_control_plane: KubeCluster, tmp_path: Path,
                                                 nginx: NginxServer, registry: RegistryServer,
                                                 images: ImageSet) -> None:
    kubeconfig, namespace = kube_control_plane.kubeconfig_path, "e2e-imports"
    async with await connect(kubeconfig) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        with KubeDeployment(kubeconfig, tmp_path / "node") as deployment:
            config = {"apiVersion": DV_API, "kind": "CDIConfig", "metadata": {"name": "config"},
                      "spec": {"insecureRegistries": [registry.host]}}
            await cluster.patch(DV_API, "CDIConfig", "config", config, patch_type="apply", field_manager="e2e")
            for dv in (datavolume("http-qcow2", namespace, {"http": {"url": nginx.url("disk.qcow2")}}),
                       datavolume("registry", namespace,
                                  {"registry": {"url": f"docker://{registry.host}/disks/fedora:latest"}}),
                       datavolume("blank", namespace, {"blank": {}}, size="64Mi")):
                await cluster.create(dv)
            dvs = await _wait_succeeded(kubeconfig, namespace, ["http-qcow2", "registry", "blank"], deployment)
            assert all(dv["status"]["progress"] == "100.0%" for dv in dvs.values())
            for name in ("http-qcow2", "registry"):
                disk = await _volume_of(kubeconfig, namespace, name) / "disk.img"
                assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
            blank = await _volume_of(kubeconfig, namespace, "blank") / "disk.img"
            assert blank.stat().st_size == 64 * 2**20 and blank.stat().st_blocks == 0
            await cluster.delete(DV_API, "DataVolume", "http-qcow2", namespace)

            async def released() -> bool:
                pvcs = (await cluster.list("v1", "PersistentVolumeClaim", namespace)).items
                return "http-qcow2" not in [p["metadata"]["name"] for p in pvcs]
            for _ in range(120):
                if await released():
                    break
                await asyncio.sleep(0.5)
            assert await released(), deployment.logs()
        await cluster.delete("v1", "Namespace", namespace)
