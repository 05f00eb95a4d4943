"""Volume populators end to end through a real `cdi serve`: a PVC whose `dataSourceRef` names a
VolumeImportSource gets the image's bytes from the test nginx, and one naming a VolumeUploadSource gets
them through `cdi image-upload pvc <target> --no-create` — no DataVolume involved. In both, the work runs
on PVC′ (`prime-<target uid>`), whose volume ends up bound to the target, and PVC′ is gone afterwards.
The import runs once more against a real kube-apiserver with `cdi controller` and `cdi node`, and the upload
through `cdi apiserver` and `cdi uploadproxy --kubeconfig` as well."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdi.kube import connect
from tests.e2e.test_kubernetes import _volume_of
from tests.e2e.test_kubernetes_upload import UPLOADS, UploadCluster, upload_cluster
from tests.e2e.test_kubernetes_upload import image_upload as kube_image_upload
from tests.e2e.test_upload import image_upload
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.kubecluster import KubeCluster
from tests.support.kubenode import KubeDeployment
from tests.support.nginx import NginxServer

pytestmark = pytest.mark.slow
__all__ = ["upload_cluster"]  # the real API server with cdi apiserver and the upload proxy (a fixture)

SOURCES = {
    "import": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: VolumeImportSource
metadata:
  name: fedora-source
spec:
  source:
    http:
      url: "{url}"
""",
    "upload": """
apiVersion: cdi.kubevirt.io/v1beta1
kind: VolumeUploadSource
metadata:
  name: upload-source
spec:
  contentType: kubevirt
""",
}
CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local
  resources:
    requests:
      storage: 1Gi
  dataSourceRef:
    apiGroup: cdi.kubevirt.io
    kind: {kind}
    name: {source}
"""


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


def notes_of(claim: dict[str, Any] | None) -> dict[str, str]:
    return dict(((claim or {}).get("metadata") or {}).get("annotations") or {})


def populated(plane: ControlPlane, name: str) -> dict[str, Any]:
    """Wait until the target is bound with its population done, and PVC′ is gone."""
    def done() -> dict[str, Any] | None:
        claim = plane.get("pvc", name)
        bound = claim is not None and (claim.get("status") or {}).get("phase") == "Bound"
        return claim if bound and notes_of(claim).get("cdi.kubevirt.io/storage.pod.phase") == "Succeeded" else None
    claim: dict[str, Any] = plane.wait_for(done, f"PVC {name} to be populated", timeout=180)
    prime = f"prime-{claim['metadata']['uid']}"
    assert notes_of(claim)["cdi.kubevirt.io/storage.populator.pvcPrime"] == prime
    plane.wait_for(lambda: plane.get("pvc", prime) is None, f"{prime} to be deleted", timeout=60)
    return claim


def test_a_claim_naming_a_volume_import_source_gets_the_images_bytes(control_plane: ControlPlane, nginx: NginxServer,
                                                                     images: ImageSet) -> None:
    control_plane.apply(SOURCES["import"].format(url=nginx.url("disk.qcow2.gz")))
    control_plane.apply(CLAIM.format(name="fedora", kind="VolumeImportSource", source="fedora-source"))
    claim = populated(control_plane, "fedora")
    assert notes_of(claim)["cdi.kubevirt.io/storage.populator.progress"] == "100.0%"
    disk = control_plane.volume_path("fedora") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    events = control_plane.cdi("describe", "pvc", "fedora").stdout
    assert "CreatedPVCPrimeSuccessfully" in events and "ImportSucceeded" in events
    assert control_plane.get("pod", f"importer-prime-{claim['metadata']['uid']}") is None


# A consumer (a VM's stand-in): once it may start, it reports the sha256 of the disk's first N bytes.
CONSUMER_CODE = ("import hashlib, os; f = open(os.path.join(os.environ['CDI_DATA_PATH'], 'disk.img'), 'rb'); "
                 "open(os.environ['CDI_TERMINATION_LOG'], 'w').write(hashlib.sha256(f.read({size})).hexdigest())")


def test_wait_for_first_consumer_populates_when_a_pod_uses_the_claim(control_plane: ControlPlane,
                                                                      nginx: NginxServer, images: ImageSet) -> None:
    """On a WaitForFirstConsumer class nothing happens until a pod uses the claim; the scheduler then picks
    the node, PVC′ is made there, and the pod starts on the populated volume."""
    control_plane.apply(SOURCES["import"].format(url=nginx.url("disk.qcow2")))
    control_plane.apply(CLAIM.format(name="lazy", kind="VolumeImportSource", source="fedora-source")
                        .replace("storageClassName: local", "storageClassName: local-wffc"))
    claim = control_plane.get("pvc", "lazy")
    assert claim is not None
    assert control_plane.get("pvc", f"prime-{claim['metadata']['uid']}") is None  # no consumer yet
    control_plane.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vm", "namespace": "default"},
                         "spec": {"restartPolicy": "Never", "volumes": [
                             {"name": "disk", "persistentVolumeClaim": {"claimName": "lazy"}}],
                             "containers": [{"name": "main", "image": "quay.io/example/vm:v1",
                                             "command": ["python", "-c",
                                                         CONSUMER_CODE.format(size=images.virtual_size)],
                                             "volumeMounts": [{"name": "disk", "mountPath": "/data"}]}]}})
    populated(control_plane, "lazy")
    assert notes_of(control_plane.get("pvc", "lazy"))["volume.kubernetes.io/selected-node"]

    def finished() -> dict[str, Any] | None:
        vm = control_plane.get("pod", "vm")
        return vm if ((vm or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") else None
    vm = control_plane.wait_for(finished, "the consumer pod to finish", timeout=120)
    terminated = vm["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (0, images.reference_sha256)


async def test_image_upload_into_a_claim_naming_a_volume_upload_source(control_plane: ControlPlane,
                                                                        images: ImageSet) -> None:
    control_plane.apply(SOURCES["upload"])
    control_plane.apply(CLAIM.format(name="uploaded", kind="VolumeUploadSource", source="upload-source"))
    code, out, err = await image_upload(control_plane, "pvc", "uploaded", "--no-create",
                                        "--image-path", str(images.path("disk.qcow2")))
    assert code == 0, out + err + control_plane.log_tail()
    assert "completed successfully" in out
    populated(control_plane, "uploaded")
    disk = control_plane.volume_path("uploaded") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    again = await image_upload(control_plane, "pvc", "uploaded", "--no-create", "--image-path",
                               str(images.path("disk.qcow2")))
    assert again[0] == 0 and "has already been uploaded" in again[1]


async def test_a_volume_import_source_on_a_real_api_server(kube_control_plane: KubeCluster, tmp_path: Path,
                                                           nginx: NginxServer, images: ImageSet) -> None:
    """`cdi controller` + `cdi node` on kube-apiserver: kube-controller-manager's PV binder binds the target to
    the volume handed over from PVC′ (the node's provisioner leaves the target, a populator's claim, alone)."""
    kubeconfig, namespace = kube_control_plane.kubeconfig_path, "e2e-populators"
    async with await connect(kubeconfig) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        with KubeDeployment(kubeconfig, tmp_path / "node") as deployment:
            source, claim = (yaml.safe_load(text) for text in (
                SOURCES["import"].format(url=nginx.url("disk.qcow2")),
                CLAIM.format(name="fedora", kind="VolumeImportSource", source="fedora-source")))
            for obj in (source, claim):
                await cluster.create({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
            target = await _populated_on(kubeconfig, namespace, "fedora", deployment.logs)
            assert notes_of(target)["cdi.kubevirt.io/storage.populator.progress"] == "100.0%"
            disk = await _volume_of(kubeconfig, namespace, "fedora") / "disk.img"
            assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
            prime = f"prime-{target['metadata']['uid']}"
            for _ in range(120):
                if prime not in [c["metadata"]["name"] for c in
                                 (await cluster.list("v1", "PersistentVolumeClaim", namespace)).items]:
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"{prime} was not deleted\n{deployment.logs()}")
        await cluster.delete("v1", "Namespace", namespace)


async def _populated_on(kubeconfig: Path, namespace: str, name: str, logs: Callable[[], str]) -> dict[str, Any]:
    """Wait until the target is bound with its population done."""
    async with await connect(kubeconfig) as cluster:
        for _ in range(360):
            target = await cluster.get("v1", "PersistentVolumeClaim", name, namespace)
            if (target.get("status") or {}).get("phase") == "Bound" and \
                    notes_of(target).get("cdi.kubevirt.io/storage.pod.phase") == "Succeeded":
                return target
            await asyncio.sleep(0.5)
    raise AssertionError(f"{notes_of(target)}\n{logs()}")


async def test_a_volume_upload_source_through_the_real_api_server(upload_cluster: UploadCluster, tmp_path: Path,
                                                                  images: ImageSet) -> None:
    kubeconfig = upload_cluster.cluster.kubeconfig_path
    source, claim = (yaml.safe_load(text) for text in (
        SOURCES["upload"], CLAIM.format(name="populated-upload", kind="VolumeUploadSource", source="upload-source")))
    async with await connect(kubeconfig) as cluster:
        for obj in (source, claim):
            await cluster.create({**obj, "metadata": {**obj["metadata"], "namespace": UPLOADS}})
    code, out, err = await kube_image_upload(upload_cluster, tmp_path, "pvc", "populated-upload", "-n", UPLOADS,
                                             "--no-create", "--image-path", str(images.path("disk.qcow2")))
    assert code == 0, out + err + upload_cluster.log_tail()
    await _populated_on(kubeconfig, UPLOADS, "populated-upload", upload_cluster.log_tail)
    disk = await _volume_of(kubeconfig, UPLOADS, "populated-upload") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
