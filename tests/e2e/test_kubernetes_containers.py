"""Worker pods as podman containers under `cdi node --pod-runtime container` against a real API server:
`cdi controller` creates an importer pod for an HTTP DataVolume, the node agent runs it in the project's
image, and the DataVolume reaches Succeeded with the image's bytes on its volume. (It stalled in
Pending before the node agent lifted the `not-ready` taint the API server puts on a new Node.)
Skipped, with the reason, where podman cannot run or the image cannot be built (tests/image/building)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdi.kube import connect
from tests.e2e.test_datavolume_import import sha256_prefix
from tests.e2e.test_kubernetes import _volume_of, _wait_succeeded, datavolume
from tests.image.building import BuildFailed, build, unavailable_reason
from tests.support.catalog import ImageSet
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import KubeDeployment
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.slow


def worker_image_or_skip() -> str:
    """The project's image for this tree (built once per session); skips the test where it cannot be."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"container runtime: {reason}")
    try:
        return build()
    except BuildFailed as e:
        pytest.skip(f"container runtime: the image cannot be built: {e}")


@pytest.fixture(scope="module")
def worker_image() -> str:
    return worker_image_or_skip()


async def test_an_http_import_runs_in_a_container_on_a_kube_node(kube_control_plane: KubeCluster, tmp_path: Path,
                                                                 nginx: NginxServer, images: ImageSet,
                                                                 worker_image: str) -> None:
    kubeconfig, namespace = kube_control_plane.kubeconfig_path, "e2e-containers"
    async with await connect(kubeconfig) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        with KubeDeployment(kubeconfig, tmp_path / "node", pod_runtime="container",
                            pod_image=worker_image) as deployment:
            await cluster.create(datavolume("boxed", namespace, {"http": {"url": nginx.url("disk.qcow2.gz")}}))
            dvs = await _wait_succeeded(kubeconfig, namespace, ["boxed"], deployment, timeout=300)
            assert dvs["boxed"]["status"]["progress"] == "100.0%"
            disk = await _volume_of(kubeconfig, namespace, "boxed") / "disk.img"
            assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
            assert disk.stat().st_uid == 107  # written by the pod's user in the container, not by root
            node_log = (tmp_path / "node" / "node.log").read_text()
            assert "cdi.pods.containers: container pycdi-" in node_log  # the launcher ran (and removed) one
        await cluster.delete("v1", "Namespace", namespace)
