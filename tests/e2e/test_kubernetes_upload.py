"""`cdi image-upload --kubeconfig` end to end on a real API server (issue 11): a control plane with the
front-proxy flags an aggregated API needs, CDI's CRDs, `cdi apiserver` registered behind the aggregator
(tokens signed with its `cdi-api-signing-key`), `cdi controller` + `cdi node` (the upload server runs as
a pod of this machine) and `cdi uploadproxy --kubeconfig` (finds the upload pod by its IP, verifies the
token with the signing key's public half, presents a client certificate of the upload-server CA). The
upload of a qcow2 ends with the DataVolume Succeeded and the image's bytes on the volume; once with the
upload server as a process, once as a podman container of the project's image (skipped where podman or
the image is not available).

Everything CDI runs keeps its Secrets and Lease in namespace `cdi`, as an install's would; the set-up of
the aggregated API is `tests/kube/test_apiserver.py`'s."""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_datavolume_import import sha256_prefix
from tests.e2e.test_kubernetes import _volume_of, _wait_succeeded
from tests.e2e.test_kubernetes_containers import worker_image_or_skip
from tests.kube.test_apiserver import NAMESPACE, PROXY_NAME, cdi_apiserver, front_proxy_args
from tests.support.backends import install_crds
from tests.support.catalog import ImageSet
from tests.support.daemon import CDI, running
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, free_port, kube_binaries
from tests.support.kubenode import KubeDeployment
from tests.support.tls import make_client_cert, make_pki

pytestmark = pytest.mark.slow
UPLOADS = "e2e-uploads"


@dataclass
class UploadCluster:
    cluster: KubeCluster
    deployment: KubeDeployment
    proxy_url: str
    logs: list[Path]

    def log_tail(self) -> str:
        tails = [f"--- {log.name} ---\n" + log.read_text(errors="replace")[-3000:] for log in self.logs if log.exists()]
        return "\n".join([*tails, self.deployment.logs()])


def _proxy_healthy(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # signed by the upload-server CA
    with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=5) as reply:
        return bool(reply.status == 200)


@contextmanager
def cdi_uploadproxy(kubeconfig: Path, home: Path) -> Iterator[tuple[str, Path]]:
    """`cdi uploadproxy --kubeconfig` on a free 127.0.0.1 port, healthy; yields its URL and log."""
    home.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), home / "cdi-uploadproxy.log"
    argv = [CDI, "uploadproxy", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE, "--port", str(port)]
    url = f"https://127.0.0.1:{port}"
    env = {**os.environ, "CDI_HOME": str(home)}
    with running("cdi uploadproxy", argv, log, lambda _: _proxy_healthy(url), env=env):
        yield url, log


@pytest.fixture(scope="module", params=["process", "container"])
def upload_cluster(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[UploadCluster]:
    """The cluster, with the upload server running as a process or as a container (`cdi node --pod-runtime`)."""
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as error:
        pytest.skip(str(error))
    runtime: str = request.param
    image = worker_image_or_skip() if runtime == "container" else None
    work = tmp_path_factory.mktemp("kube-upload")
    front = make_pki(work / "front-proxy")
    front_proxy = make_client_cert(front, PROXY_NAME)
    (work / "kube").mkdir()
    with KubeCluster(binaries, work / "kube", extra_apiserver_args=front_proxy_args(front, front_proxy)) as cluster:
        install_crds(cluster)
        for namespace in (NAMESPACE, UPLOADS):
            cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": namespace}})
        kubeconfig = cluster.kubeconfig_path
        with cdi_apiserver(cluster, work) as (_, _, apiserver_log), \
                KubeDeployment(kubeconfig, work / "node", namespace=NAMESPACE, pod_runtime=runtime,
                               pod_image=image) as deployment, \
                cdi_uploadproxy(kubeconfig, work / "proxy") as (proxy_url, proxy_log):
            yield UploadCluster(cluster, deployment, proxy_url, [apiserver_log, proxy_log])


async def image_upload(plane: UploadCluster, home: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        CDI, "image-upload", *args, "--kubeconfig", str(plane.cluster.kubeconfig_path),
        "--uploadproxy-url", plane.proxy_url, "--insecure", env={**os.environ, "CDI_HOME": str(home)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    except TimeoutError:
        proc.kill()  # do not leave the client behind a failed test
        out, err = await proc.communicate()
        return 124, out.decode(), err.decode() + "\n(timed out after 240 s)\n"
    return proc.returncode or 0, out.decode(), err.decode()


async def test_image_upload_through_the_real_api_server(upload_cluster: UploadCluster, tmp_path: Path,
                                                        images: ImageSet) -> None:
    code, out, err = await image_upload(upload_cluster, tmp_path, "dv", "uploaded", "-n", UPLOADS,
                                        "--size", "96Mi", "--image-path", str(images.path("disk.qcow2")))
    assert code == 0, out + err + upload_cluster.log_tail()
    assert "completed successfully" in out
    assert f"upload done: {images.path('disk.qcow2').stat().st_size} bytes in " in err
    kubeconfig = upload_cluster.cluster.kubeconfig_path
    dvs = await _wait_succeeded(kubeconfig, UPLOADS, ["uploaded"], upload_cluster.deployment, timeout=60)
    assert dvs["uploaded"]["status"]["progress"] == "100.0%"
    disk = await _volume_of(kubeconfig, UPLOADS, "uploaded") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    assert not (tmp_path / "store.db").exists()  # the embedded store was never touched
