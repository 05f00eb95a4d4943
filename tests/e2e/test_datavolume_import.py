"""DataVolumes end to end through the real CLI and a real `cdi serve`: the seeds' http and blank
examples, a too-small volume, a URL that 404s, deletion mid-import, and a control plane killed
mid-import."""

from __future__ import annotations

import hashlib
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdi.sizing import usable_space
from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.nginx import Location, NginxServer

pytestmark = pytest.mark.slow

# Seed 6.2.x, the http DataVolume of "dataVolumeTemplates" (its registry member dropped: the docs'
# example sets two sources, which upstream's webhook refuses), with the URL pointing at local nginx.
SEED_HTTP = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: fedora-dv
spec:
  storage:
    resources:
      requests:
        storage: 10Gi
    storageClassName: local
  source:
    http:
      url: "{url}"
"""
# Seed 8.x "blank-image-datavolume", placeholders filled in.
SEED_BLANK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: blank-image-datavolume
spec:
  source:
    blank: {}
  storage:
    resources:
      requests:
        storage: 2Gi
    storageClassName: "local"
"""


def parse_rate(text: str) -> float:
    """"1.0Mi/s" -> bytes per second."""
    number = text.removesuffix("/s")
    for unit, scale in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)):
        if number.endswith(unit):
            return float(number.removesuffix(unit)) * scale
    return float(number.removesuffix("B"))


def phase(plane: ControlPlane, name: str) -> str:
    dv = plane.get("dv", name)
    return str(((dv or {}).get("status") or {}).get("phase") or "")


def wait_phase(plane: ControlPlane, name: str, wanted: str, timeout: float = 120) -> dict[str, Any]:
    plane.wait_for(lambda: phase(plane, name) == wanted, f"DataVolume {name} to be {wanted}", timeout)
    dv = plane.get("dv", name)
    assert dv is not None
    return dv


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(length))
    return digest.hexdigest()


def test_seed_http_datavolume_imports_the_right_bytes(control_plane: ControlPlane, nginx: NginxServer,
                                                      images: ImageSet) -> None:
    control_plane.apply(SEED_HTTP.format(url=nginx.url("disk.qcow2.gz")))
    control_plane.cdi("wait", "dv/fedora-dv", "--for=condition=Ready", "--timeout=180s", timeout=200)
    dv = control_plane.get("dv", "fedora-dv")
    assert dv is not None and dv["status"]["phase"] == "Succeeded" and dv["status"]["progress"] == "100.0%"
    disk = control_plane.volume_path("fedora-dv") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
    assert disk.stat().st_size >= usable_space(Decimal("0.06"), 10 << 30) - (64 << 20)
    table = control_plane.cdi("get", "dv").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["fedora-dv", "Succeeded", "100.0%", "0"]
    assert control_plane.get("pod", "importer-fedora-dv") is None  # cleaned up when done


def test_seed_blank_datavolume(control_plane: ControlPlane) -> None:
    control_plane.apply(SEED_BLANK)
    wait_phase(control_plane, "blank-image-datavolume", "Succeeded")
    disk = control_plane.volume_path("blank-image-datavolume") / "disk.img"
    assert disk.stat().st_size == usable_space(Decimal("0.06"), 2 << 30) or disk.stat().st_size > (1 << 30)
    assert disk.stat().st_blocks == 0


def test_image_larger_than_the_volume_fails_with_upstreams_condition(control_plane: ControlPlane,
                                                                     nginx: NginxServer) -> None:
    manifest = SEED_HTTP.format(url=nginx.url("huge.qcow2")).replace("10Gi", "64Mi")
    control_plane.apply(manifest)
    dv = wait_phase(control_plane, "fedora-dv", "Failed")
    running = next(c for c in dv["status"]["conditions"] if c["type"] == "Running")
    assert running["message"] == "DataVolume too small to contain image"
    described = control_plane.cdi("describe", "dv", "fedora-dv").stdout
    assert "DataVolume too small to contain image" in described


def test_404_keeps_retrying_with_a_rising_restart_count(control_plane: ControlPlane, nginx: NginxServer) -> None:
    control_plane.apply(SEED_HTTP.format(url=nginx.url("disk.qcow2", location=Location.NOT_FOUND))
                        .replace("10Gi", "64Mi"))
    control_plane.wait_for(lambda: int(((control_plane.get("dv", "fedora-dv") or {}).get("status") or {})
                                       .get("restartCount") or 0) >= 2, "two restarts", timeout=120)
    dv = control_plane.get("dv", "fedora-dv")
    assert dv is not None and dv["status"]["phase"] in ("ImportScheduled", "ImportInProgress")
    events = control_plane.cdi("get", "events", "-n", "default").stdout
    assert "expected status code 200, got 404" in events


def wide_row(plane: ControlPlane, name: str) -> dict[str, str]:
    """`cdi get dv NAME -o wide` as header -> cell (empty cells dropped from the end: split on blanks)."""
    lines = plane.cdi("get", "dv", name, "-o", "wide").stdout.splitlines()
    return dict(zip(lines[0].split(), lines[1].split(), strict=False)) if len(lines) == 2 else {}


def test_deleting_a_datavolume_mid_import_removes_its_pod_and_volume(control_plane: ControlPlane,
                                                                      nginx: NginxServer) -> None:
    control_plane.apply(SEED_HTTP.format(url=nginx.url("disk.raw", location=Location.SLOW)).replace("10Gi", "128Mi"))
    wait_phase(control_plane, "fedora-dv", "ImportInProgress")
    # The import is shaped to 1 MiB/s: `-o wide` shows how far it got of the 64 MiB, how fast, and when it ends.
    control_plane.wait_for(lambda: len(wide_row(control_plane, "fedora-dv")) == 8, "BYTES, RATE and ETA", timeout=60)
    row = wide_row(control_plane, "fedora-dv")
    assert row["BYTES"].endswith("/64Mi") and row["RATE"].endswith("/s") and row["ETA"][-1] == "s", row
    assert 256 << 10 <= parse_rate(row["RATE"]) <= 4 << 20, row  # nginx's limit_rate, roughly
    volume = control_plane.volume_path("fedora-dv")
    control_plane.cdi("delete", "dv", "fedora-dv", "--timeout=60s")
    control_plane.wait_for(lambda: control_plane.get("pod", "importer-fedora-dv") is None, "importer pod gone")
    control_plane.wait_for(lambda: control_plane.get("pvc", "fedora-dv") is None, "PVC gone")
    control_plane.wait_for(lambda: not control_plane.cdi("get", "pv", "-o", "name").stdout.strip(), "PV gone")
    control_plane.wait_for(lambda: not volume.exists() or not any(volume.iterdir()), "volume released")


def test_killing_serve_mid_import_then_restarting_completes(control_plane: ControlPlane, nginx: NginxServer,
                                                            images: ImageSet) -> None:
    control_plane.apply(SEED_HTTP.format(url=nginx.url("disk.qcow2", location=Location.SLOW)).replace("10Gi", "128Mi"))
    wait_phase(control_plane, "fedora-dv", "ImportInProgress")
    control_plane.stop(signal.SIGKILL)
    control_plane.start()
    dv = wait_phase(control_plane, "fedora-dv", "Succeeded", timeout=180)
    assert dv["status"]["restartCount"] >= 0
    disk = control_plane.volume_path("fedora-dv") / "disk.img"
    assert sha256_prefix(disk, images.virtual_size) == images.reference_sha256
