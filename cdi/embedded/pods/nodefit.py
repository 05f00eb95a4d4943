"""Whether a pod may run on the local node, as kube-scheduler's node filters decide it. Pure.

`misfit(pod spec, node)` is "" when the pod fits, else the scheduler's reason: NodeUnschedulable
(`spec.unschedulable`), TaintToleration (a NoSchedule or NoExecute taint the pod does not tolerate) and
NodeAffinity (`nodeSelector`, and the required node affinity's ORed `nodeSelectorTerms`: In, NotIn, Exists,
DoesNotExist, Gt, Lt on labels, `metadata.name` as the one field), checked in that order, each message as
kube-scheduler words it for one node. `scheduling` reads the Node and calls it before looking at the
pod's claims; pod (anti-)affinity is not modelled (with one node, a pod's own term is the only other pod
that could matter). Worker pods get their `nodeSelector`, affinity and tolerations from the CDI
resource's `spec.workload` (`cdi.controllers.placement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_FIT = "0/1 nodes are available: "
SCHEDULED_EFFECTS = ("NoSchedule", "NoExecute")  # PreferNoSchedule only scores


def misfit(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> str:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return NO_FIT + "1 node(s) were unschedulable."
    tolerations = pod_spec.get("tolerations") or []
    for taint in spec.get("taints") or []:
        if taint.get("effect") in SCHEDULED_EFFECTS and not any(tolerates(t, taint) for t in tolerations):
            return NO_FIT + f"1 node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}."
    meta = node.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    selector: Mapping[str, str] = pod_spec.get("nodeSelector") or {}
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if any(labels.get(k) != v for k, v in selector.items()) or (
            required is not None and not _any_term(required.get("nodeSelectorTerms") or [], labels,
                                                    str(meta.get("name") or ""))):
        return NO_FIT + "1 node(s) didn't match Pod's node affinity/selector."
    return ""


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' ToleratesTaint: an empty effect or (with Exists) an empty key matches any."""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("key") and toleration.get("key") != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return bool(toleration.get("key")) and (toleration.get("value") or "") == (taint.get("value") or "")


def _any_term(terms: Sequence[Mapping[str, Any]], labels: Mapping[str, str], name: str) -> bool:
    """Terms are ORed; a term with no requirements matches no node (as Kubernetes has it)."""
    return any(_term(term, labels, name) for term in terms)


def _term(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(_requirement(e, labels) for e in expressions) and all(
        _requirement(f, {"metadata.name": name}) for f in fields)


def _requirement(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = str(expression.get("key") or ""), expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    present, value = key in labels, labels.get(key)
    match operator:
        case "In":
            return present and value in values
        case "NotIn":
            return not present or value not in values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            try:
                have, want = int(str(value)), int(values[0])
            except (ValueError, IndexError):
                return False
            return have > want if operator == "Gt" else have < want
    return False
