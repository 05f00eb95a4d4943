"""Golden images on a real API server: `cdi controller` and `cdi node` against kube-apiserver run a
DataImportCron on a local docker-registry image — imported at once, its DataSource Ready — re-import after
a new digest is pushed, and a DataVolume with `sourceRef` to the DataSource clones the newest image."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.kube import connect
from tests.e2e.test_kubernetes import DV_API, _volume_of, _wait_succeeded
from tests.registry import images as oci
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import KubeDeployment
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.slow
MiB = 1 << 20


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path_factory.mktemp("kube-cron-registry"),
                        tmp_path_factory.mktemp("kube-cron-work")) as plain:
        yield plain


def push(registry: RegistryServer, marker: bytes) -> str:
    layer = oci.layer({"disk/disk.img": marker.ljust(MiB, b"\0")})
    return oci.Pusher(registry.base_url).image("golden/fedora", "latest", oci.image([layer]))


async def _eventually(check: Any, what: str, deployment: KubeDeployment, timeout: float = 240) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{deployment.logs()}")
        await asyncio.sleep(1)


async def test_a_cron_keeps_a_datasource_fresh_on_a_real_api_server(kube_control_plane: KubeCluster, tmp_path: Path,
                                                                    registry: RegistryServer) -> None:
    kubeconfig, namespace = kube_control_plane.kubeconfig_path, "e2e-cron"
    first = push(registry, b"first golden image")
    async with await connect(kubeconfig) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            with KubeDeployment(kubeconfig, tmp_path / "node") as deployment:
                config = {"apiVersion": DV_API, "kind": "CDIConfig", "metadata": {"name": "config"},
                          "spec": {"insecureRegistries": [registry.host]}}
                await cluster.patch(DV_API, "CDIConfig", "config", config, patch_type="apply", field_manager="e2e")
                await cluster.create({
                    "apiVersion": DV_API, "kind": "DataImportCron",
                    "metadata": {"name": "fedora-cron", "namespace": namespace},
                    "spec": {"schedule": "@every 2s", "managedDataSource": "fedora", "importsToKeep": 1,
                             "template": {"spec": {
                                 "source": {"registry": {"url": f"docker://{registry.host}/golden/fedora:latest"}},
                                 "storage": {"resources": {"requests": {"storage": "64Mi"}}}}}}})

                async def imported(digest: str) -> dict[str, Any] | None:
                    data_source = await cluster.get(DV_API, "DataSource", "fedora", namespace)
                    ready = ((data_source.get("status") or {}).get("conditions") or [{}])[0]
                    pvc = ((data_source.get("status") or {}).get("source") or {}).get("pvc") or {}
                    wanted = f"fedora-{digest.removeprefix('sha256:')[:12]}"
                    return data_source if ready.get("status") == "True" and pvc.get("name") == wanted else None

                async def data_source_of(digest: str) -> dict[str, Any] | None:
                    try:
                        return await imported(digest)
                    except NotFound:  # the cron has not made its DataSource yet
                        return None
                await _eventually(lambda: data_source_of(first), "the first import", deployment)
                second = push(registry, b"second golden image")
                await _eventually(lambda: data_source_of(second), "the re-import of a new digest", deployment)
                await cluster.create({"apiVersion": DV_API, "kind": "DataVolume",
                                      "metadata": {"name": "vm-root", "namespace": namespace},
                                      "spec": {"sourceRef": {"kind": "DataSource", "name": "fedora"},
                                               "storage": {"resources": {"requests": {"storage": "128Mi"}}}}})
                await _wait_succeeded(kubeconfig, namespace, ["vm-root"], deployment)
                disk = await _volume_of(kubeconfig, namespace, "vm-root") / "disk.img"
                with disk.open("rb") as image:
                    assert image.read(19) == b"second golden image"
                cron = await cluster.get(DV_API, "DataImportCron", "fedora-cron", namespace)
                up_to_date = next(c for c in cron["status"]["conditions"] if c["type"] == "UpToDate")
                assert up_to_date["status"] == "True", cron["status"]
                await cluster.delete(DV_API, "DataVolume", "vm-root", namespace)
                await cluster.delete(DV_API, "DataImportCron", "fedora-cron", namespace)
        finally:
            await cluster.delete("v1", "Namespace", namespace)
