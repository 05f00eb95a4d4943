"""`cdi image-upload` waiting on the store: it gives up on an upload server that never becomes ready
with a reason, it notices at once (through the store's watch) when the claim turns out to be
already uploaded to (and says so, successfully), and it refuses a claim that waits for its first
consumer unless --force-bind, with virtctl's words."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdi.contracts import annotations as ann
from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import Run, RunAsync
from tests.cli.manifests import datavolume


def test_an_upload_server_that_never_gets_ready_is_reported(cdi: Run, tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    started = time.monotonic()
    result = cdi("image-upload", "dv", "fedora", "--size", "1Gi", "--image-path", str(image), "--wait-secs", "1")
    assert result.code == 1
    assert "the upload server for default/fedora was not ready within 1 s" in result.err
    assert "DataVolume default/fedora created" in result.out
    assert time.monotonic() - started < 10


async def test_a_claim_already_uploaded_to_ends_the_wait_at_once(cdi_in_thread: RunAsync, cluster: EmbeddedCluster,
                                                                  tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "disk", "namespace": "default",
                                       "annotations": {ann.ANN_UPLOAD_REQUEST: ""}},
                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    waiting = asyncio.create_task(cdi_in_thread("image-upload", "pvc", "disk", "--no-create", "--image-path",
                                                str(image), "--wait-secs", "60"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await cluster.patch("v1", "PersistentVolumeClaim", "disk",
                        {"metadata": {"annotations": {ann.ANN_POD_PHASE: "Succeeded"}}}, "default")
    result = await asyncio.wait_for(waiting, 10)
    assert (result.code, result.err) == (0, "")
    assert result.out.endswith("PVC default/disk has already been uploaded; nothing to do\n")


WFFC_DV = ("error: cannot upload to DataVolume in WaitForFirstConsumer state, make sure the PVC is Bound, or use "
           "force-bind flag\n")
CLAIM_SPEC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


async def test_a_datavolume_waiting_for_its_first_consumer_is_refused_at_once(
        cdi_in_thread: RunAsync, cluster: EmbeddedCluster, tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    created = await cluster.create(datavolume("fedora"))
    await cluster.update_status({**created, "status": {"phase": "WaitForFirstConsumer"}})
    started = time.monotonic()
    result = await cdi_in_thread("image-upload", "dv", "fedora", "--no-create", "--image-path", str(image),
                                 "--wait-secs", "60")
    assert (result.code, result.err) == (1, WFFC_DV)
    assert time.monotonic() - started < 10
    forced = await cdi_in_thread("image-upload", "dv", "fedora", "--no-create", "--force-bind", "--image-path",
                                 str(image), "--wait-secs", "1")
    assert forced.err == "error: the upload server for default/fedora was not ready within 1 s; see `cdi describe " \
                         "pvc fedora`\n"


async def test_an_upload_claim_of_a_wait_for_first_consumer_class_is_refused(
        cdi_in_thread: RunAsync, cluster: EmbeddedCluster, tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "late"},
                          "provisioner": "example.com/late", "volumeBindingMode": "WaitForFirstConsumer"})
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "disk", "namespace": "default",
                                       "annotations": {ann.ANN_UPLOAD_REQUEST: ""}},
                          "spec": {**CLAIM_SPEC, "storageClassName": "late"}})
    result = await cdi_in_thread("image-upload", "pvc", "disk", "--no-create", "--image-path", str(image),
                                 "--wait-secs", "60")
    assert (result.code, result.err) == (1, WFFC_DV.replace("DataVolume", "PVC"))
