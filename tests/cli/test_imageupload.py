"""`cdi image-upload` waiting on the store: it gives up on an upload server that never becomes ready
with a reason, and it notices at once (through the store's watch) when the claim turns out to be
already uploaded to."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cdi.contracts import annotations as ann
from cdi.embedded import EmbeddedCluster
from tests.cli.conftest import Run, RunAsync


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
    assert result.code == 1
    assert "PVC default/disk has already been uploaded to" in result.err
