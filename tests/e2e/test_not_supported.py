"""Nothing is accepted silently, end to end: a DataVolume cloning through a DataSource (`sourceRef`,
the DataImportCron issue's part) is stored by `cdi serve`, which says at once (condition, Warning event)
that it is not supported yet, and `cdi wait` fails fast with that reason instead of waiting out its
timeout."""

from __future__ import annotations

import time

import pytest

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow

SOURCE_REF_DV = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataSource
metadata:
  name: fedora
spec:
  source:
    pvc:
      name: fedora-golden
      namespace: default
---
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: datavolume
spec:
  sourceRef:
    kind: DataSource
    name: fedora
  storage: {}
"""


def test_sourceref_datavolume_says_not_supported_and_wait_fails_fast(control_plane: ControlPlane) -> None:
    control_plane.apply(SOURCE_REF_DV)
    started = time.monotonic()
    waited = control_plane.cdi("wait", "dv/datavolume", "--for=condition=Ready", "--timeout=60s", check=False)
    assert waited.returncode == 1
    assert time.monotonic() - started < 30
    assert waited.stderr.strip().startswith("error: datavolumes/datavolume will not progress: NotSupported: "
                                            "Cloning through a DataSource (spec.sourceRef) is not supported yet")
    described = control_plane.cdi("describe", "dv", "datavolume").stdout
    events = described[described.index("Events:"):]
    assert "Warning" in events and "NotSupported" in events and "Cloning through a DataSource" in events
    dv = control_plane.get("dv", "datavolume")
    assert dv is not None and dv["status"]["phase"] == "Pending"
    assert control_plane.get("pvc", "datavolume") is None  # no empty volume was made and called a clone
