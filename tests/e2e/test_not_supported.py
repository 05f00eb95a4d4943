"""Nothing is accepted silently, end to end: an ObjectTransfer (a deprecated kind nothing implements yet) is
stored by `cdi serve`, which says at once (condition, Warning event) that it is not supported, and `cdi wait`
fails fast with that reason instead of waiting out its timeout."""

from __future__ import annotations

import time

import pytest

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow

OBJECT_TRANSFER = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: ObjectTransfer
metadata:
  name: move-disk
spec:
  source:
    kind: PersistentVolumeClaim
    namespace: default
    name: disk
  target:
    namespace: elsewhere
"""


def test_objecttransfer_says_not_supported_and_wait_fails_fast(control_plane: ControlPlane) -> None:
    control_plane.apply(OBJECT_TRANSFER)
    started = time.monotonic()
    waited = control_plane.cdi("wait", "objecttransfer/move-disk", "--for=condition=Complete", "--timeout=60s",
                               check=False)
    assert waited.returncode == 1
    assert time.monotonic() - started < 30
    assert waited.stderr.strip().startswith("error: objecttransfers/move-disk will not progress: NotSupported: "
                                            "ObjectTransfer is not supported yet"), waited.stderr
    described = control_plane.cdi("describe", "objecttransfer", "move-disk").stdout
    events = described[described.index("Events:"):]
    assert "Warning" in events and "NotSupported" in events
