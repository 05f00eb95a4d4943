"""A killed importer pod resumes, end to end through `cdi serve`: an HTTP DataVolume is imported through a
throttling relay, the relay holds at 7/8 of the image (by then the importer has written a time-based
checkpoint: at most every 5 s), the importer process is SIGKILLed, and the restarted importer continues
from its checkpoint: the DataVolume succeeds with the image's bytes, the claim shows an `ImportResumed` event saying where it
resumed, and the two attempts together fetched less than the image and a half."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from typing import Any

import pytest

from tests.support.catalog import ImageSet
from tests.support.controlplane import ControlPlane
from tests.support.nginx import NginxServer
from tests.support.shaper import ShapedRelay

pytestmark = pytest.mark.slow

MiB = 1 << 20
MANIFEST = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: resumed-dv
spec:
  storage:
    resources:
      requests:
        storage: 128Mi
  source:
    http:
      url: "{url}"
"""


def container_status(plane: ControlPlane) -> dict[str, Any]:
    pod = plane.get("pod", "importer-resumed-dv") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def phase(plane: ControlPlane) -> str:
    return str(((plane.get("dv", "resumed-dv") or {}).get("status") or {}).get("phase", ""))


def test_a_killed_importer_pod_resumes_from_its_checkpoint(control_plane: ControlPlane, nginx: NginxServer,
                                                          images: ImageSet) -> None:
    size = images.path("disk.raw").stat().st_size
    with ShapedRelay("127.0.0.1", nginx.ports.plain, rate=8 * MiB) as relay:
        relay.hold_at = size * 7 // 8
        control_plane.apply(MANIFEST.format(url=f"http://127.0.0.1:{relay.port}/disk.raw"))
        control_plane.wait_for(lambda: relay.downstream >= size * 7 // 8, "the relay to reach 7/8 of the image")
        time.sleep(0.5)  # the importer takes in what it was sent
        pid = int(str(container_status(control_plane)["containerID"]).removeprefix("pycdi://"))
        os.killpg(pid, signal.SIGKILL)  # the container: its shim leads the process group
        relay.hold_at = None
        control_plane.wait_for(lambda: phase(control_plane) == "Succeeded", "the DataVolume to succeed", timeout=180)
        fetched = relay.downstream
    events = control_plane.cdi("get", "events", "-n", "default").stdout
    assert "ImportResumed" in events and "Resumed the import after a restart at source byte" in events, events
    assert "Normal   ImportResumed" in control_plane.cdi("describe", "pvc", "resumed-dv").stdout
    assert fetched < size * 3 // 2, (fetched, size)
    with (control_plane.volume_path("resumed-dv") / "disk.img").open("rb") as disk:
        assert hashlib.sha256(disk.read(images.virtual_size)).hexdigest() == images.reference_sha256
