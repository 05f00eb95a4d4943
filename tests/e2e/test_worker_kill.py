"""A killed worker is reported as killed, end to end through `cdi serve`: SIGKILL a running importer and
the importer pod's status carries exit code 137 and the signal, while the events (`cdi get events`,
`cdi describe pvc`, `cdi describe dv`) say "Importer pod ... was killed (exit code 137, SIGKILL)" rather than whatever the
importer last logged; the import carries on with a restarted importer."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.nginx import Location, NginxServer

pytestmark = pytest.mark.slow

KILLED = "Importer pod importer-slow-dv was killed (exit code 137, SIGKILL)"
MANIFEST = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: slow-dv
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
    pod = plane.get("pod", "importer-slow-dv") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def test_a_sigkilled_importer_is_reported_as_killed(control_plane: ControlPlane, nginx: NginxServer) -> None:
    control_plane.apply(MANIFEST.format(url=nginx.url("disk.raw", location=Location.SLOW)))
    control_plane.wait_for(lambda: "running" in (container_status(control_plane).get("state") or {}) and
                           (control_plane.get("dv", "slow-dv") or {}).get("status", {}).get("phase")
                           == "ImportInProgress", "the importer to run")
    pid = int(str(container_status(control_plane)["containerID"]).removeprefix("pycdi://"))
    os.killpg(pid, signal.SIGKILL)  # the container: its shim leads the process group
    last = control_plane.wait_for(lambda: (container_status(control_plane).get("lastState") or {}).get("terminated"),
                                  "the killed run in lastState")
    assert (last["exitCode"], last.get("signal"), last["reason"]) == (137, 9, "Error")
    control_plane.wait_for(lambda: KILLED in control_plane.cdi("get", "events", "-n", "default").stdout,
                           "the kill event")
    described = control_plane.cdi("describe", "pvc", "slow-dv").stdout
    assert "Warning  ErrImportFailed" in described and KILLED in described
    control_plane.wait_for(lambda: container_status(control_plane).get("restartCount") == 1 and
                           "running" in (container_status(control_plane).get("state") or {}), "the restarted importer")
    dv = control_plane.get("dv", "slow-dv")
    assert dv is not None and dv["status"]["phase"] == "ImportInProgress" and dv["status"]["restartCount"] == 1
    # The DataVolume says it too, however fast the restart came.
    control_plane.wait_for(lambda: f"{KILLED} (restart 1)" in control_plane.cdi("describe", "dv", "slow-dv").stdout,
                           "the kill on the DataVolume's events")
