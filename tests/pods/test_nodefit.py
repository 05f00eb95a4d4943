"""The local scheduler's node filters: a pod whose nodeSelector, required node affinity and tolerations fit
the Node runs there; one that does not stays Pending (PodScheduled=False, a FailedScheduling event) until
the Node changes. The pure table first (`nodefit.misfit`), then the runner on the embedded store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cdi.embedded import EmbeddedCluster
from cdi.embedded.nodeagent import register_node
from cdi.embedded.pods.nodefit import misfit
from cdi.embedded.pods.runner import PodRunner
from tests.pods.support import NAMESPACE, container, phase, pod, py, settle

NODE = {"metadata": {"name": "pycdi-node", "labels": {"kubernetes.io/hostname": "pycdi-node",
                                                     "kubernetes.io/os": "linux", "cores": "2"}}}
TAINTED = {**NODE, "spec": {"taints": [{"key": "dedicated", "value": "cdi", "effect": "NoSchedule"}]}}
AFFINITY_MISS = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
TAINT_MISS = "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: cdi}."


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


@pytest.mark.parametrize(("spec", "node", "why"), [
    ({}, NODE, ""),
    ({"nodeSelector": {"kubernetes.io/hostname": "pycdi-node"}}, NODE, ""),
    ({"nodeSelector": {"kubernetes.io/hostname": "pycdi-node", "role": "worker"}}, NODE, AFFINITY_MISS),
    (required(expr("kubernetes.io/os", "In", "linux", "windows")), NODE, ""),
    (required(expr("kubernetes.io/os", "NotIn", "linux")), NODE, AFFINITY_MISS),
    (required(expr("role", "NotIn", "infra")), NODE, ""),  # absent label: NotIn holds
    (required(expr("role", "Exists")), NODE, AFFINITY_MISS),
    (required(expr("role", "DoesNotExist")), NODE, ""),
    (required(expr("cores", "Gt", "1")), NODE, ""),
    (required(expr("cores", "Lt", "2")), NODE, AFFINITY_MISS),
    (required(expr("role", "Exists"), expr("kubernetes.io/os", "Exists")), NODE, ""),  # terms are ORed
    (required({"matchExpressions": [{"key": "kubernetes.io/os", "operator": "Exists"},
                                    {"key": "role", "operator": "Exists"}]}), NODE, AFFINITY_MISS),  # ANDed within
    (required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["pycdi-node"]}]}), NODE, ""),
    (required({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["other"]}]}), NODE, AFFINITY_MISS),
    (required({}), NODE, AFFINITY_MISS),  # an empty term matches no node
    ({}, TAINTED, TAINT_MISS),
    ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cdi", "effect": "NoSchedule"}]}, TAINTED, ""),
    ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "other"}]}, TAINTED, TAINT_MISS),
    ({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}, TAINTED, TAINT_MISS),
    ({"tolerations": [{"operator": "Exists"}]}, TAINTED, ""),  # tolerates everything
    ({}, {**NODE, "spec": {"taints": [{"key": "slow", "effect": "PreferNoSchedule"}]}}, ""),  # scores only
    ({}, {**NODE, "spec": {"unschedulable": True}}, "0/1 nodes are available: 1 node(s) were unschedulable."),
])
def test_misfit(spec: dict[str, Any], node: dict[str, Any], why: str) -> None:
    assert misfit(spec, node) == why


async def test_the_runner_schedules_only_pods_that_fit_the_node(cluster: EmbeddedCluster, runner: PodRunner) -> None:
    await register_node(cluster, datetime.now(UTC))
    done = py("print('ran')")
    await cluster.create(pod("fits", container(command=done), nodeSelector={"kubernetes.io/hostname": "pycdi-node"},
                             tolerations=[{"key": "gpu", "operator": "Exists"}],
                             **required(expr("kubernetes.io/hostname", "In", "pycdi-node"))))
    ran = await settle(runner, cluster, "fits", phase("Succeeded", "Failed"))
    assert ran is not None and (ran["status"]["phase"], ran["spec"]["nodeName"]) == ("Succeeded", "pycdi-node")

    await cluster.create(pod("elsewhere", container(command=done), nodeSelector={"role": "worker"}))
    waiting = await settle(runner, cluster, "elsewhere", lambda p: bool(p and (p.get("status") or {}).get(
        "conditions")))
    assert waiting is not None and waiting["status"]["phase"] == "Pending" and not waiting["spec"].get("nodeName")
    scheduled = next(c for c in waiting["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == ("False", "Unschedulable", AFFINITY_MISS)
    events = [(e["type"], e["reason"], e["message"]) for e in (await cluster.list("v1", "Event", NAMESPACE)).items
              if e["involvedObject"]["name"] == "elsewhere"]
    assert events == [("Warning", "FailedScheduling", AFFINITY_MISS)]

    # The admin labels the node: the pod is scheduled at the next look.
    await cluster.patch("v1", "Node", "pycdi-node", {"metadata": {"labels": {"role": "worker"}}})
    ran = await settle(runner, cluster, "elsewhere", phase("Succeeded", "Failed"))
    assert ran is not None and (ran["status"]["phase"], ran["spec"]["nodeName"]) == ("Succeeded", "pycdi-node")
