"""`cdi image-upload` waiting on the store: it gives up on an upload server that never becomes ready
with a reason, it notices at once (through the store's watch) when the claim turns out to be
already uploaded to (and says so, successfully), and it refuses a claim that waits for its first
consumer unless --force-bind, with virtctl's words. It starts without the HTTP client, which it loads on
a thread while it waits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
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


def test_the_command_starts_without_the_http_client() -> None:
    """aiohttp is imported on a thread once the volume is created (`preload`), not before the command's
    first request to the store."""
    probe = ("import sys; from cdi.cli.main import build_parser; "
             "build_parser(['image-upload', 'dv', 'x']).parse_args(['image-upload', 'dv', 'x', '--image-path', 'f']); "
             "print(sorted(m for m in ('aiohttp', 'cdi.cli.uploadclient') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_preload_imports_the_module_on_a_thread() -> None:
    probe = ("import sys; from cdi.cli.imageupload import UPLOAD_CLIENT, preload; "
             "thread = preload(UPLOAD_CLIENT); thread.join(60); "
             "print(thread.daemon, thread.is_alive(), UPLOAD_CLIENT in sys.modules, 'aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "True", "True"]


def test_preload_of_a_module_that_fails_leaves_the_error_to_the_real_import() -> None:
    probe = ("from cdi.cli.imageupload import preload; preload('cdi.no_such_module').join(60); "
             "import importlib\ntry:\n    importlib.import_module('cdi.no_such_module')\n"
             "except ModuleNotFoundError as e:\n    print('raised', e.name)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert (result.stdout.strip(), result.stderr) == ("raised cdi.no_such_module", "")
