"""Nothing is accepted silently, end to end: the seeds' PVC-clone DataVolume is stored by `cdi serve`,
which says at once (condition, Warning event) that cloning is not supported yet, and `cdi wait` fails
fast with that reason instead of waiting out its timeout."""

from __future__ import annotations

import time

import pytest

from tests.api.manifests import FROM_SEED
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow


def test_clone_datavolume_says_not_supported_and_wait_fails_fast(control_plane: ControlPlane) -> None:
    control_plane.apply(FROM_SEED["pvc-clone"])
    started = time.monotonic()
    waited = control_plane.cdi("wait", "dv/datavolume", "--for=condition=Ready", "--timeout=60s", check=False)
    assert waited.returncode == 1
    assert time.monotonic() - started < 30
    assert waited.stderr.strip().startswith("error: datavolumes/datavolume will not progress: NotSupported: "
                                            "Cloning from a PersistentVolumeClaim (spec.source.pvc) is not "
                                            "supported yet")
    described = control_plane.cdi("describe", "dv", "datavolume").stdout
    events = described[described.index("Events:"):]
    assert "Warning" in events and "NotSupported" in events and "Cloning from a PersistentVolumeClaim" in events
    dv = control_plane.get("dv", "datavolume")
    assert dv is not None and dv["status"]["phase"] == "Pending"
    assert control_plane.get("pvc", "datavolume") is None  # no empty volume was made and called a clone
