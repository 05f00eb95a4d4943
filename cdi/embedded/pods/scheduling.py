"""Scheduling a pod to the one local node, as kube-scheduler's VolumeBinding plugin would.

A pod is bound to the node once every claim it uses is Bound. A Pending claim whose StorageClass
binds WaitForFirstConsumer gets `volume.kubernetes.io/selected-node: pycdi-node`, which is what the
provisioner waits for; the pod then waits, Pending with `PodScheduled=False` (reason Unschedulable)
naming the claims, until a PVC change (`controller` maps it back to the pod) lets it bind. Before the
claims, the node itself must fit the pod (`nodefit`: its nodeSelector, required node affinity and
tolerations against the Node's labels and taints); a pod that does not fit stays Pending the same way.
`observe_claims` and `observe_node_fit` read; `plan_scheduling` is the pure decision; the runner applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import ANN_DEFAULT_STORAGE_CLASS
from cdi.embedded.pods.node import ANN_SELECTED_NODE, NODE_NAME
from cdi.embedded.pods.nodefit import misfit
from cdi.embedded.pods.spec import PodInfo
from cdi.embedded.volumes.keys import HOSTNAME_LABEL

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
UNSCHEDULABLE = "Unschedulable"


@dataclass(frozen=True)
class ClaimView:
    """What scheduling needs to know of one claim the pod uses."""

    name: str
    exists: bool = True
    bound: bool = False
    deleting: bool = False
    wait_for_first_consumer: bool = False
    selected_node: str = ""


@dataclass(frozen=True)
class SchedulingPlan:
    select_node_on: tuple[str, ...] = ()  # claims to annotate with the selected node
    bind: bool = False  # set spec.nodeName and PodScheduled=True
    message: str = ""  # why not, for PodScheduled=False and the FailedScheduling event


def plan_scheduling(claims: Sequence[ClaimView], node_misfit: str = "") -> SchedulingPlan:
    if node_misfit:
        return SchedulingPlan(message=node_misfit)  # no node for it: no claim gets one selected either
    missing = [c.name for c in claims if not c.exists]
    if missing:
        return SchedulingPlan(message=f'0/1 nodes are available: persistentvolumeclaim "{missing[0]}" not found.')
    deleting = [c.name for c in claims if c.deleting]
    if deleting:
        return SchedulingPlan(message=f'0/1 nodes are available: persistentvolumeclaim "{deleting[0]}" is being '
                                      f"deleted.")
    unbound = [c for c in claims if not c.bound]
    if not unbound:
        return SchedulingPlan(bind=True)
    immediate = [c.name for c in unbound if not c.wait_for_first_consumer]
    if immediate:
        return SchedulingPlan(message="0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims: "
                                      + ", ".join(immediate) + ".")
    return SchedulingPlan(
        select_node_on=tuple(c.name for c in unbound if c.selected_node != NODE_NAME),
        message=f"waiting for the volumes of claims {', '.join(c.name for c in unbound)} to be provisioned on "
                f"node {NODE_NAME}")


async def observe_node_fit(cluster: Cluster, pod: Object) -> str:
    """Why the pod does not fit our Node ("" when it does); without a Node object (a runner alone, in
    tests), the node is its name and hostname label."""
    try:
        node = await cluster.get("v1", "Node", NODE_NAME)
    except NotFound:
        node = {"metadata": {"name": NODE_NAME, "labels": {HOSTNAME_LABEL: NODE_NAME}}}
    return misfit(pod.get("spec") or {}, node)


async def observe_claims(cluster: Cluster, pod: PodInfo) -> list[ClaimView]:
    classes: list[Object] | None = None
    views = []
    for name in pod.claim_names():
        try:
            claim = await cluster.get("v1", "PersistentVolumeClaim", name, pod.namespace)
        except NotFound:
            views.append(ClaimView(name, exists=False))
            continue
        bound = (claim.get("status") or {}).get("phase") == "Bound"
        wffc = False
        if not bound:
            if classes is None:
                classes = (await cluster.list("storage.k8s.io/v1", "StorageClass")).items
            wffc = binding_mode(claim, classes) == WAIT_FOR_FIRST_CONSUMER
        meta = claim.get("metadata") or {}
        views.append(ClaimView(name, bound=bound, deleting=bool(meta.get("deletionTimestamp")),
                               wait_for_first_consumer=wffc,
                               selected_node=str((meta.get("annotations") or {}).get(ANN_SELECTED_NODE) or "")))
    return views


def binding_mode(claim: Object, classes: Sequence[Object]) -> str:
    """The volumeBindingMode of the claim's StorageClass (the default class when it names none)."""
    wanted = (claim.get("spec") or {}).get("storageClassName")
    if wanted == "":
        return "Immediate"  # no class: static binding only
    for storage_class in classes:
        meta = storage_class.get("metadata") or {}
        is_default = (meta.get("annotations") or {}).get(ANN_DEFAULT_STORAGE_CLASS) == "true"
        if (wanted is None and is_default) or meta.get("name") == wanted:
            return str(storage_class.get("volumeBindingMode") or "Immediate")
    return "Immediate"
