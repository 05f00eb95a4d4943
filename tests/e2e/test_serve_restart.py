"""Restarting or upgrading `cdi serve` interrupts nothing (issue 14, item 2; the seeds' update chapters).

An HTTP import (through a throttling relay held at half the image) and an `cdi image-upload` (through a
relay held after 24 MiB) are in flight when `cdi serve` stops — gracefully (SIGTERM), killed (SIGKILL),
or replaced by another build. Their worker pods keep running (each under its shim), the next `cdi serve`
re-attaches to them, and both finish with the right bytes: the importer pod never restarted and fetched
the image once, and the client re-sent at most one chunk (the upload proxy inside `cdi serve` was gone
for a moment; the upload server never was).

The upgrade runs the first `cdi serve` from a separate copy of the source tree (`git archive HEAD`: the
last commit, or a copy of the files where git is missing) labelled with an older operator version, and
the second from this tree: the embedded operator reports the upgrade, and the copy's controllers, pod
runner and shim hand their work over to this tree's. The worker programs themselves come from the one
virtual environment both share.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.e2e.test_upload import disk_sha256, image_upload
from tests.e2e.test_upload_server_kill import CHUNK, HoldingRelay
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane, release_storage
from tests.support.nginx import NginxServer
from tests.support.shaper import ShapedRelay

pytestmark = pytest.mark.slow
MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
IMPORT = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: imported
spec:
  storage:
    resources:
      requests:
        storage: 128Mi
  source:
    http:
      url: "{url}"
"""
CDI_CR = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDI
metadata:
  name: cdi
spec: {}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(plane: ControlPlane, pod: str) -> dict[str, Any]:
    statuses = ((plane.get("pod", pod) or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def previous_build(destination: Path) -> list[str]:
    """The command that runs `cdi` from a copy of the source tree: the last commit, else the files."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "cdi", "importer",
                              "uploadproxy"], capture_output=True, check=False)
    destination.mkdir(parents=True)
    if archive.returncode == 0 and archive.stdout:
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    else:
        for package in ("cdi", "importer", "uploadproxy"):
            shutil.copytree(ROOT / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = f"import sys; sys.path.insert(0, {str(destination)!r}); from cdi.cli.main import main; main()"
    return [sys.executable, "-c", code]


@pytest.fixture
def plane(tmp_path: Path) -> Any:
    control = ControlPlane(tmp_path / "home", uploadproxy_port=free_port())
    try:
        yield control
    finally:
        control.stop()
        release_storage(control.home)


async def in_flight_across(plane: ControlPlane, nginx: NginxServer, images: ImageSet, tmp_path: Path,
                           restart: Any) -> None:
    """Start an import and an upload, hold both half-way, `restart()` cdi serve, let them finish, check."""
    size = images.path("disk.raw").stat().st_size
    data = hashlib.shake_256(b"rides through").digest(64 * MiB)
    image = tmp_path / "upload.raw"
    image.write_bytes(data)
    config = plane.get("cdiconfig", "config", namespace="")
    assert config is not None
    proxy = urlparse(config["status"]["uploadProxyURL"])
    with ShapedRelay("127.0.0.1", nginx.ports.plain, rate=16 * MiB) as source:
        source.hold_at = size // 2
        plane.apply(IMPORT.format(url=f"http://127.0.0.1:{source.port}/disk.raw"))
        sender = HoldingRelay("127.0.0.1", int(proxy.port or 443), hold_after=24 * MiB)
        await sender.start()
        try:
            client = asyncio.create_task(image_upload(
                plane, "dv", "uploaded", "--size", "256Mi", "--image-path", str(image), "--chunk-size", "4Mi",
                "--uploadproxy-url", f"https://127.0.0.1:{sender.port}"))
            await asyncio.wait_for(sender.held.wait(), 120)
            await asyncio.to_thread(plane.wait_for, lambda: source.downstream >= size // 2, "half the image fetched")
            importer_before, uploader_before = worker(plane, "importer-imported"), worker(plane, "cdi-upload-uploaded")
            assert "running" in importer_before["state"] and "running" in uploader_before["state"]

            await asyncio.to_thread(restart)

            importer_after, uploader_after = worker(plane, "importer-imported"), worker(plane, "cdi-upload-uploaded")
            assert importer_after == importer_before  # the same run, re-attached: no restart
            assert uploader_after == uploader_before
            source.hold_at = None
            sender.release()
            code, out, err = await client
        finally:
            sender.release()
            await sender.close()
        assert code == 0, out + err + plane.log_tail()
        await asyncio.to_thread(plane.wait_for, lambda: ((plane.get("dv", "imported") or {}).get("status") or {})
                                .get("phase") == "Succeeded", "the import to succeed")
        fetched = source.downstream
    assert fetched <= size + size // 100, f"the importer fetched {fetched} bytes of a {size}-byte image"
    assert disk_sha256(plane, "imported", images.virtual_size) == images.reference_sha256
    assert disk_sha256(plane, "uploaded", len(data)) == hashlib.sha256(data).hexdigest()
    # one chunk re-sent at most (the proxy went away with `cdi serve`), plus TLS records and HTTP headers
    assert sender.sent <= len(data) + CHUNK + len(data) // 100, f"the client sent {sender.sent} for {len(data)}"
    events = plane.cdi("get", "events", "-n", "default").stdout
    assert "ImportResumed" not in events and "Resumed the upload" not in events, events  # nothing started again
    assert "re-attached to container" in plane.log.read_text()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
async def test_an_import_and_an_upload_ride_through_a_restart_of_cdi_serve(
        plane: ControlPlane, nginx: NginxServer, images: ImageSet, tmp_path: Path, how: signal.Signals) -> None:
    plane.start()

    def restart() -> None:
        plane.stop(how)
        if how == signal.SIGTERM:
            assert "worker container(s) keep running" in plane.log.read_text()
        plane.start()

    await in_flight_across(plane, nginx, images, tmp_path, restart)


async def test_an_import_and_an_upload_ride_through_an_upgrade_from_the_previous_build(
        plane: ControlPlane, nginx: NginxServer, images: ImageSet, tmp_path: Path) -> None:
    plane.serve_command = previous_build(tmp_path / "previous")
    plane.serve_env = {"OPERATOR_VERSION": "v1.0.0"}
    plane.start()
    plane.apply(CDI_CR)
    plane.wait_for(lambda: ((plane.get("cdi", "cdi", namespace="") or {}).get("status") or {})
                   .get("observedVersion") == "v1.0.0", "the previous build deployed")

    def upgrade() -> None:
        plane.stop()
        plane.serve_command = ControlPlane(plane.home).serve_command  # this tree's `cdi`
        plane.serve_env = {"OPERATOR_VERSION": "v1.1.0"}
        plane.start()

    await in_flight_across(plane, nginx, images, tmp_path, upgrade)
    cr = plane.wait_for(lambda: (lambda s: s if s.get("observedVersion") == "v1.1.0" and s.get("phase") == "Deployed"
                                 else None)((plane.get("cdi", "cdi", namespace="") or {}).get("status") or {}),
                        "the upgrade to be reported")
    assert cr["targetVersion"] == "v1.1.0"
