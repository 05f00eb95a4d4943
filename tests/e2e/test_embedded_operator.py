"""The CDI resource in embedded mode, end to end: `cdi serve` is the installed control plane and reconciles
the CR itself (`cdi.operator` with the embedded installer). Applied with `cdi apply`, the CR becomes Deployed
and Available, its `spec.config` reaches CDIConfig (and the controllers: CDIConfig's status follows), a
second CR is refused, and deleting it honours `uninstallStrategy`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow

CR = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDI
metadata:
  name: cdi
spec:
  uninstallStrategy: BlockUninstallIfWorkloadsExist
  config:
    featureGates: [HonorWaitForFirstConsumer]
    filesystemOverhead:
      global: "0.1"
"""
SECOND = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: CDI
metadata:
  name: another
spec: {}
"""
BLANK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: scratch
  namespace: default
spec:
  source:
    blank: {}
  storage:
    resources:
      requests:
        storage: 16Mi
"""


def condition(obj: dict[str, Any] | None, type_: str) -> tuple[str, str] | None:
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return found["status"], found.get("reason", "")
    return None


def test_cdi_serve_reconciles_the_cdi_resource(control_plane: ControlPlane) -> None:
    control_plane.apply(CR)
    control_plane.cdi("wait", "cdi/cdi", "--for=condition=Available", "--timeout=60s")
    cdi = control_plane.get("cdi", "cdi")
    assert cdi is not None and cdi["status"]["phase"] == "Deployed"
    assert cdi["metadata"]["finalizers"] == ["operator.cdi.kubevirt.io"]
    assert condition(cdi, "Available") == ("True", "DeployCompleted")
    config = control_plane.wait_for(
        lambda: (lambda c: c if c and (c.get("status") or {}).get("filesystemOverhead", {}).get("global") == "0.1"
                 else None)(control_plane.get("cdiconfig", "config")),
        "CDIConfig's status to follow spec.config")
    assert config["spec"] == {"featureGates": ["HonorWaitForFirstConsumer"], "filesystemOverhead": {"global": "0.1"}}

    control_plane.apply(SECOND)
    second = control_plane.wait_for(
        lambda: (lambda c: c if c and (c.get("status") or {}).get("phase") == "Error" else None)(
            control_plane.get("cdi", "another")), "the second CR in Error")
    assert condition(second, "Degraded") == ("True", "ConfigError")

    control_plane.apply(BLANK)
    control_plane.cdi("delete", "cdi", "cdi", "--wait=false")
    blocked = control_plane.wait_for(
        lambda: (lambda c: c if condition(c, "Degraded") == ("True", "UninstallBlocked") else None)(
            control_plane.get("cdi", "cdi")), "the uninstall refused")
    assert blocked["metadata"]["deletionTimestamp"]
    assert control_plane.get("dv", "scratch") is not None

    control_plane.cdi("delete", "dv", "scratch")
    control_plane.wait_for(lambda: control_plane.get("cdi", "cdi") is None, "the CR deleted once no DataVolume is left")
