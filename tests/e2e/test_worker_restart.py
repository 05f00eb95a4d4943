"""A killed import does not fail for good: `cdi serve` imports a 384 MiB raw image (more than half the
volume) into a 512Mi DataVolume over a throttled nginx, the importer is SIGKILLed about half way, and
the restarted importer starts from a clean volume: the DataVolume ends Succeeded with the source's
bytes, instead of counting the half-written disk against the space and failing "DataVolume too small
to contain image"."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.nginx import Location, NginxServer
from tests.support.tls import TestPKI

pytestmark = pytest.mark.slow

MiB = 1 << 20
IMAGE_SIZE = 384 * MiB
RATE = 24 * MiB  # bytes/s: the download takes about 16 s
PARTIAL = ".disk.img.partial"  # where the importer writes before it commits disk.img
MANIFEST = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: big-dv
spec:
  storage:
    resources:
      requests:
        storage: 512Mi
  source:
    http:
      url: "{url}"
"""


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A raw image of incompressible, non-zero data (every byte is written to the volume)."""
    directory = tmp_path_factory.mktemp("big-image")
    digest = hashlib.sha256()
    with (directory / "big.raw").open("wb") as f:
        for _ in range(IMAGE_SIZE // (16 * MiB)):
            block = os.urandom(16 * MiB)
            digest.update(block)
            f.write(block)
    return directory, digest.hexdigest()


@pytest.fixture(scope="module")
def slow_nginx(big_image: tuple[Path, str], pki: TestPKI,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(big_image[0], tmp_path_factory.mktemp("nginx-slow"), pki, slow_rate=RATE) as server:
        yield server


def importer_pid(plane: ControlPlane, pod_name: str) -> int | None:
    pod: dict[str, Any] | None = plane.get("pod", pod_name)
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    if not statuses or "running" not in (statuses[0].get("state") or {}):
        return None
    container_id = str(statuses[0].get("containerID") or "")
    return int(container_id.removeprefix("pycdi://")) if container_id.startswith("pycdi://") else None


def written(volume: Path) -> int:
    try:
        return (volume / PARTIAL).stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def sha256_and_tail_is_zero(path: Path, length: int) -> tuple[str, bool]:
    digest, zero = hashlib.sha256(), True
    with path.open("rb") as f:
        remaining = length
        while remaining > 0 and (block := f.read(min(remaining, 16 * MiB))):
            digest.update(block)
            remaining -= len(block)
        while block := f.read(16 * MiB):
            zero = zero and block.count(0) == len(block)
    return digest.hexdigest(), zero


def test_importer_killed_half_way_restarts_clean_and_succeeds(control_plane: ControlPlane, slow_nginx: NginxServer,
                                                              big_image: tuple[Path, str]) -> None:
    control_plane.apply(MANIFEST.format(url=slow_nginx.url("big.raw", location=Location.SLOW)))
    volume = control_plane.wait_for(lambda: control_plane.get("pvc", "big-dv") is not None and
                                    (control_plane.get("pvc", "big-dv") or {}).get("spec", {}).get("volumeName") and
                                    control_plane.volume_path("big-dv"), "the volume", timeout=60)
    control_plane.wait_for(lambda: written(volume) >= IMAGE_SIZE // 2, "half the image written", timeout=120)
    pid = importer_pid(control_plane, "importer-big-dv")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the container: its shim leads the process group
    control_plane.wait_for(lambda: (control_plane.get("dv", "big-dv") or {}).get("status", {}).get("phase")
                           in ("Succeeded", "Failed"), "the DataVolume to finish", timeout=240)
    dv = control_plane.get("dv", "big-dv")
    assert dv is not None
    running = next(c for c in dv["status"]["conditions"] if c["type"] == "Running")
    assert dv["status"]["phase"] == "Succeeded", running
    assert dv["status"]["restartCount"] >= 1
    disk = volume / "disk.img"
    assert disk.stat().st_size >= IMAGE_SIZE
    assert sha256_and_tail_is_zero(disk, IMAGE_SIZE) == (big_image[1], True)
    assert not (volume / PARTIAL).exists()
