"""Rolling CDI's components on a real API server interrupts nothing (issue 14, item 2, Kubernetes half).

With an HTTP import (through a throttling relay held at half the image) and a `cdi image-upload` (through a
relay held after 24 MiB) in flight, every long-running component is stopped and started again, one after
the other, as a rollout replaces pods: `cdi controller`, `cdi uploadproxy` (on the same address, as
behind its Service) and `cdi node` (the kubelet of this machine: the worker pods keep running under
their shims and the new node agent re-attaches to them). Then both transfers go on and finish: the
importer pod was never restarted and fetched the image once, and the client re-sent at most one chunk
(it rode through the proxy's absence by asking the new proxy for the offset).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdi.kube import connect
from tests.e2e.test_datavolume_import import sha256_prefix
from tests.e2e.test_kubernetes import _volume_of, _wait_succeeded, datavolume
from tests.e2e.test_kubernetes_upload import UPLOADS, UploadCluster, _proxy_healthy, image_upload
from tests.e2e.test_upload_server_kill import CHUNK, HoldingRelay
from tests.kube.test_apiserver import NAMESPACE, PROXY_NAME, cdi_apiserver, front_proxy_args
from tests.support.backends import install_crds
from tests.support.catalog import ImageSet
from tests.support.daemon import CDI, wait_until
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, free_port, kube_binaries
from tests.support.kubenode import KubeDeployment
from tests.support.nginx import NginxServer
from tests.support.shaper import ShapedRelay
from tests.support.tls import make_client_cert, make_pki

pytestmark = pytest.mark.slow
MiB = 1 << 20


class RestartableProxy:
    """`cdi uploadproxy --kubeconfig` on a fixed 127.0.0.1 port, which `restart` replaces with a new process."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig, self.home = kubeconfig, home
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = home / "cdi-uploadproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [CDI, "uploadproxy", "--kubeconfig", str(self.kubeconfig), "--namespace", NAMESPACE,
                 "--port", str(self.port)], env={**os.environ, "CDI_HOME": str(self.home)}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("cdi uploadproxy", lambda: _proxy_healthy(self.url), log=self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def rolling(tmp_path: Path) -> Iterator[tuple[UploadCluster, RestartableProxy]]:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as error:
        pytest.skip(str(error))
    front = make_pki(tmp_path / "front-proxy")
    (tmp_path / "kube").mkdir()
    with KubeCluster(binaries, tmp_path / "kube", extra_apiserver_args=front_proxy_args(
            front, make_client_cert(front, PROXY_NAME))) as cluster:
        install_crds(cluster)
        for namespace in (NAMESPACE, UPLOADS):
            cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": namespace}})
        kubeconfig = cluster.kubeconfig_path
        proxy = RestartableProxy(kubeconfig, tmp_path / "proxy")
        with cdi_apiserver(cluster, tmp_path) as (_, _, apiserver_log), \
                KubeDeployment(kubeconfig, tmp_path / "node", namespace=NAMESPACE) as deployment:
            proxy.start()
            try:
                yield UploadCluster(cluster, deployment, proxy.url, [apiserver_log, proxy.log]), proxy
            finally:
                proxy.stop()


async def worker(kubeconfig: Path, pod: str) -> dict[str, Any]:
    async with await connect(kubeconfig) as cluster:
        found = await cluster.get("v1", "Pod", pod, UPLOADS)
    return dict(((found.get("status") or {}).get("containerStatuses") or [{}])[0])


async def test_an_import_and_an_upload_ride_through_a_rollout_of_every_component(
        rolling: tuple[UploadCluster, RestartableProxy], nginx: NginxServer, images: ImageSet,
        tmp_path: Path) -> None:
    plane, proxy = rolling
    kubeconfig, deployment = plane.cluster.kubeconfig_path, plane.deployment
    size = images.path("disk.raw").stat().st_size
    data = hashlib.shake_256(b"rides through a rollout").digest(64 * MiB)
    image = tmp_path / "upload.raw"
    image.write_bytes(data)
    with ShapedRelay("127.0.0.1", nginx.ports.plain, rate=16 * MiB) as source:
        source.hold_at = size // 2
        async with await connect(kubeconfig) as cluster:
            await cluster.create(datavolume("imported", UPLOADS, {"http": {
                "url": f"http://127.0.0.1:{source.port}/disk.raw"}}))
        sender = HoldingRelay("127.0.0.1", proxy.port, hold_after=24 * MiB)
        await sender.start()
        try:
            plane.proxy_url = f"https://127.0.0.1:{sender.port}"
            client = asyncio.create_task(image_upload(plane, tmp_path / "client", "dv", "uploaded", "-n", UPLOADS,
                                                      "--size", "256Mi", "--image-path", str(image),
                                                      "--chunk-size", "4Mi"))
            await asyncio.wait_for(sender.held.wait(), 180)
            await asyncio.to_thread(wait_until, "half the image fetched", lambda: source.downstream >= size // 2,
                                    120)
            importer_before = await worker(kubeconfig, "importer-imported")
            uploader_before = await worker(kubeconfig, "cdi-upload-uploaded")
            assert "running" in importer_before["state"] and "running" in uploader_before["state"]

            await asyncio.to_thread(deployment.restart, "controller")
            await asyncio.to_thread(proxy.restart)
            await asyncio.to_thread(deployment.restart, "node")

            source.hold_at = None
            sender.release()
            code, out, err = await client
        finally:
            sender.release()
            await sender.close()
        assert code == 0, out + err + plane.log_tail()
        await _wait_succeeded(kubeconfig, UPLOADS, ["imported", "uploaded"], deployment, timeout=180)
        fetched = source.downstream
    node_log = (deployment.home / "node.log").read_text(errors="replace")
    # picked up again by the new node agent: still running, or (released at once) ended before its first look
    picked_up = (r"re-attached to container \S+ of pod e2e-uploads/importer-imported "
                 r"|container \S+ of pod e2e-uploads/importer-imported \(\S+\) ended with exit code 0 while no runner")
    assert re.search(picked_up, node_log), node_log[-3000:]
    assert fetched <= size + size // 100, f"the importer fetched {fetched} bytes of a {size}-byte image"
    assert sender.sent <= len(data) + CHUNK + len(data) // 100, f"the client sent {sender.sent} for {len(data)}"
    volume = await _volume_of(kubeconfig, UPLOADS, "imported")
    assert sha256_prefix(volume / "disk.img", images.virtual_size) == images.reference_sha256
    uploaded = await _volume_of(kubeconfig, UPLOADS, "uploaded")
    assert sha256_prefix(uploaded / "disk.img", len(data)) == hashlib.sha256(data).hexdigest()
    async with await connect(kubeconfig) as cluster:
        events = [e.get("reason") for e in (await cluster.list("v1", "Event", UPLOADS)).items]
    assert "ImportResumed" not in events and "UploadResumed" not in events, events
