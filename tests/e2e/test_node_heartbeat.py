"""The embedded node (`cdi serve`) keeps its heartbeat as `cdi node` does on a real cluster, with kubelet's
defaults: the Lease `kube-node-lease/pycdi-node` (holder the node, 40 s, owned by the Node) renewed
every 10 s, and the Node's four conditions; both read back through the CLI as a user would. When the
control plane stops the Lease stays in the store, as kubelet leaves its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.slow


def _lease(plane: ControlPlane) -> dict[str, Any]:
    result = plane.cdi("get", "lease", "pycdi-node", "-n", "kube-node-lease", "-o", "json")
    lease: dict[str, Any] = json.loads(result.stdout)
    return lease


def _renewed(lease: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(lease["spec"]["renewTime"]).astimezone(UTC)


def test_cdi_serve_renews_the_node_lease(control_plane: ControlPlane) -> None:
    first = control_plane.wait_for(lambda: control_plane.get("lease", "pycdi-node", "kube-node-lease"),
                                   "the node Lease", timeout=30)
    node = control_plane.get("node", "pycdi-node")
    assert node is not None
    assert first["spec"]["holderIdentity"] == "pycdi-node"
    assert first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "pycdi-node", "uid": node["metadata"]["uid"]}]
    assert [c["type"] for c in node["status"]["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure",
                                                                 "Ready"]
    renewed = control_plane.wait_for(lambda: (lease := _lease(control_plane)) and _renewed(lease) > _renewed(first)
                                     and lease, "a renewal of the node Lease", timeout=20)
    assert 9.5 <= (_renewed(renewed) - _renewed(first)).total_seconds() <= 13, (first, renewed)  # every 10 s
    control_plane.stop()
    assert _lease(control_plane)["spec"] == renewed["spec"]  # left to expire, not deleted
