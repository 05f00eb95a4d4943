"""Registering the local Node lifts the taints of a Node that is not Ready: a real API server's
TaintNodesByCondition admission puts `node.kubernetes.io/not-ready:NoSchedule` on every new Node, and with
no node lifecycle controller to lift it the local scheduler (`nodefit`) would leave every pod Pending.
The pure filter first (`ready_taints`), then `register_node` on the embedded store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.nodeagent import ready_taints, register_node

NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
DEDICATED = {"key": "dedicated", "value": "cdi", "effect": "NoSchedule"}


@pytest.mark.parametrize(("taints", "kept"), [
    ([], []),
    ([NOT_READY], []),
    ([NOT_READY, UNREACHABLE], []),
    ([DEDICATED, NOT_READY], [DEDICATED]),
    ([DEDICATED], [DEDICATED]),
])
def test_ready_taints_keep_only_taints_unrelated_to_readiness(taints: list[dict[str, Any]],
                                                              kept: list[dict[str, Any]]) -> None:
    assert ready_taints(taints) == kept


async def test_register_node_lifts_the_not_ready_taint_and_keeps_others(cluster: EmbeddedCluster) -> None:
    await cluster.create({"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": "pycdi-node"}, "spec": {"taints": [NOT_READY, DEDICATED]}})
    await register_node(cluster, datetime.now(UTC))
    node = await cluster.get("v1", "Node", "pycdi-node")
    assert node["spec"]["taints"] == [DEDICATED]
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]


async def test_register_node_leaves_an_untainted_node_alone(cluster: EmbeddedCluster) -> None:
    await register_node(cluster, datetime.now(UTC))
    await register_node(cluster, datetime.now(UTC))
    node = await cluster.get("v1", "Node", "pycdi-node")
    assert not (node.get("spec") or {}).get("taints")
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
