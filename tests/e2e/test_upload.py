"""`cdi image-upload` end to end: a real `cdi serve`, its upload proxy, an upload server pod, tokens
and the resumable protocol — including through a relay that cuts the connection twice, and one that
loses the reply to the final chunk."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.relay import CuttingRelay
from tests.upload.lost_reply import LostReplyRelay

pytestmark = pytest.mark.slow
MiB = 1 << 20


def disk_sha256(plane: ControlPlane, claim: str, length: int) -> str:
    digest = hashlib.sha256()
    with (plane.volume_path(claim) / "disk.img").open("rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


async def image_upload(plane: ControlPlane, *args: str) -> tuple[int, str, str]:
    cdi = str(Path(sys.executable).with_name("cdi"))
    proc = await asyncio.create_subprocess_exec(cdi, "image-upload", *args, env=plane.env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    except TimeoutError:
        proc.kill()  # do not leave the client (and its pipes) behind a failed test
        out, err = await proc.communicate()
        return 124, out.decode(), err.decode() + "\n(timed out after 240 s)\n" + plane.log_tail()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_upload_qcow2_into_a_new_datavolume(control_plane: ControlPlane, images: ImageSet) -> None:
    code, out, err = await image_upload(control_plane, "dv", "uploaded", "--size", "2Gi",
                                        "--image-path", str(images.path("disk.qcow2")))
    assert code == 0, out + err + control_plane.log_tail()
    assert "completed successfully" in out
    assert "100.00%" in err and "MiB/s" in err  # the progress bar
    assert f"upload done: {images.path('disk.qcow2').stat().st_size} bytes in " in err
    dv = control_plane.get("dv", "uploaded")
    assert dv is not None and dv["status"]["phase"] == "Succeeded"
    assert disk_sha256(control_plane, "uploaded", images.virtual_size) == images.reference_sha256
    assert control_plane.get("pod", "cdi-upload-uploaded") is None


async def test_upload_resumes_through_a_relay_that_cuts_twice(control_plane: ControlPlane, images: ImageSet) -> None:
    config = control_plane.get("cdiconfig", "config", namespace="")
    assert config is not None
    proxy = urlparse(config["status"]["uploadProxyURL"])
    relay = CuttingRelay("127.0.0.1", int(proxy.port or 443), budgets=[12 * MiB, 20 * MiB])
    await relay.start()
    try:
        code, out, err = await image_upload(
            control_plane, "dv", "resumed", "--size", "256Mi", "--image-path", str(images.path("disk.raw")),
            "--chunk-size", "4Mi", "--uploadproxy-url", f"https://127.0.0.1:{relay.port}")
    finally:
        await relay.close()
    assert code == 0, out + err + control_plane.log_tail()
    assert relay.cuts == 2 and relay.connections >= 3  # cut twice mid-chunk; each time a new connection resumed
    assert disk_sha256(control_plane, "resumed", images.virtual_size) == images.reference_sha256


async def test_a_lost_reply_to_the_final_chunk_is_still_a_success(control_plane: ControlPlane,
                                                                    images: ImageSet) -> None:
    """The proxy forwards the final chunk, the upload server finishes and its pod goes away, and the relay
    loses the reply: `cdi image-upload` asks the claim, sees Succeeded and exits 0 at once (it used to
    retry against "already finished uploading" for two minutes and fail). Uploading again says so."""
    config = control_plane.get("cdiconfig", "config", namespace="")
    assert config is not None
    proxy = urlparse(config["status"]["uploadProxyURL"])
    image = images.path("disk.qcow2")
    assert image.stat().st_size < 64 * MiB  # one chunk, so the relay's count crosses inside the final one

    def claim_succeeded() -> bool:
        pvc = control_plane.get("pvc", "lost")
        return bool(pvc) and pvc["metadata"].get("annotations", {}).get("cdi.kubevirt.io/storage.pod.phase") == \
            "Succeeded"

    async def upload_finished() -> None:
        await asyncio.to_thread(control_plane.wait_for, claim_succeeded, "the upload to succeed")

    relay = LostReplyRelay("127.0.0.1", int(proxy.port or 443), image.stat().st_size, upload_finished)
    await relay.start()
    try:
        code, out, err = await image_upload(
            control_plane, "dv", "lost", "--size", "1Gi", "--image-path", str(image), "--chunk-size", "64Mi",
            "--uploadproxy-url", f"https://127.0.0.1:{relay.port}")
    finally:
        await relay.close()
    assert code == 0, out + err + control_plane.log_tail()
    assert relay.dropped == 1
    assert out.endswith(f"Uploading {image} completed successfully\n")
    assert disk_sha256(control_plane, "lost", images.virtual_size) == images.reference_sha256
    again = await image_upload(control_plane, "dv", "lost", "--no-create", "--image-path", str(image))
    assert again[0] == 0 and again[1].endswith("DataVolume default/lost has already been uploaded; nothing to do\n")


async def test_upload_into_a_pvc(control_plane: ControlPlane, images: ImageSet) -> None:
    code, out, err = await image_upload(control_plane, "pvc", "plain", "--size", "128Mi",
                                        "--image-path", str(images.path("disk.raw.xz")))
    assert code == 0, out + err + control_plane.log_tail()
    assert disk_sha256(control_plane, "plain", images.virtual_size) == images.reference_sha256


async def test_image_larger_than_the_volume_fails_clearly(control_plane: ControlPlane, images: ImageSet) -> None:
    code, _out, err = await image_upload(control_plane, "dv", "small", "--size", "16Mi",
                                        "--image-path", str(images.path("disk.qcow2")))
    assert code != 0
    assert "larger than the reported available storage" in err or "too small" in err, err
    dv = control_plane.get("dv", "small")
    assert dv is not None and dv["status"]["phase"] != "Succeeded"


async def test_ten_concurrent_uploads_to_ten_datavolumes(control_plane: ControlPlane, images: ImageSet) -> None:
    names = [f"many-{i}" for i in range(10)]
    results = await asyncio.gather(*(image_upload(control_plane, "dv", name, "--size", "96Mi", "--image-path",
                                                  str(images.path("disk.qcow2.gz"))) for name in names))
    for code, out, err in results:
        assert code == 0, out + err
    for name in names:
        assert disk_sha256(control_plane, name, images.virtual_size) == images.reference_sha256
    assert control_plane.process is not None
    status = Path(f"/proc/{control_plane.process.pid}/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    assert peak_kib < 400 * 1024, f"cdi serve (controllers + upload proxy) peaked at {peak_kib // 1024} MiB"
