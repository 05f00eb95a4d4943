"""A blank DataVolume's disk is exactly the size asked for, end to end through `cdi serve` with the
default filesystem overhead, on the default (ext4) class and on `local-xfs`."""

from __future__ import annotations

import json
import subprocess

import pytest

from cdi.quantity import parse_quantity
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow

BLANK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: {name}
spec:
  source:
    blank: {{}}
  storage:
    storageClassName: {storage_class}
    resources:
      requests:
        storage: {size}
"""
CASES = (("blank-128mi", "local", "128Mi"), ("blank-1gi", "local", "1Gi"), ("blank-xfs-128mi", "local-xfs", "128Mi"))


def virtual_size(plane: ControlPlane, claim: str) -> int:
    disk = plane.volume_path(claim) / "disk.img"
    info = subprocess.run(["qemu-img", "info", "--output", "json", str(disk)], capture_output=True, text=True,
                          check=True)
    return int(json.loads(info.stdout)["virtual-size"])


def test_blank_disks_have_exactly_the_requested_size(control_plane: ControlPlane) -> None:
    for name, storage_class, size in CASES:
        control_plane.apply(BLANK.format(name=name, storage_class=storage_class, size=size))
    for name, _, _ in CASES:
        control_plane.cdi("wait", f"dv/{name}", "--for=condition=Ready", "--timeout=120s", timeout=150)

    sizes = {name: virtual_size(control_plane, name) for name, _, _ in CASES}

    assert sizes == {name: parse_quantity(size) for name, _, size in CASES}
