"""Where worker pods may run: the CDI resource's `spec.workload` merged with what each pod needs itself.

Upstream (`GetWorkloadNodePlacement`) gives every worker pod it creates — importer, upload server, clone
source — the active CDI resource's `spec.workload` nodeSelector, affinity and tolerations, then adds
the pod's own needs on top. The import and upload controllers and the clone source controller call
`workload_placement` when they create a pod (a change of `spec.workload` affects pods created
afterwards; running pods are left alone) and pass it to the pod builders (`workerpodspec`,
`hostclone.podspec`), which call the pure `merged`:

* `nodeSelector`: the workload's entries, then the pod's own (the pod's own wins a clash: it is what the
  pod cannot run without);
* `tolerations`: the workload's, then the pod's own not already listed;
* `affinity`: the workload's, with the pod's own terms appended to the lists the scheduler ANDs or
  scores (pod affinity and anti-affinity, required and preferred; preferred node affinity), as upstream
  appends the clone source pod's pod-affinity terms to the workload's. Required node affinity is
  different: its `nodeSelectorTerms` are ORed, so appending would loosen both sides; the pod's own
  requirement is ANDed into each of the workload's terms instead (upstream never has both);
* `nodeName`: only ever the pod's own (a populator's PVC′ pins its worker to the node the scheduler
  chose for the target, upstream's `SetNodeNameIfPopulator`).

The CDI resource is the active one (`cdi.controllers.activecdi`); none, or a cluster not serving the
kind: no workload placement.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cdi.api.cdi import NodePlacement
from cdi.cluster.protocol import Cluster, Object
from cdi.controllers.activecdi import active_cdi_of
from cdi.controllers.meta import name_of

log = logging.getLogger(__name__)
# Lists of terms inside `affinity` that combine by concatenation: (section, list) pairs.
_APPENDED = (("podAffinity", "requiredDuringSchedulingIgnoredDuringExecution"),
             ("podAffinity", "preferredDuringSchedulingIgnoredDuringExecution"),
             ("podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"),
             ("podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution"),
             ("nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution"))
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


@dataclass(frozen=True)
class Scheduling:
    """A pod's scheduling fields: the workload placement, or what one pod needs itself."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, Any] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    node_name: str = ""

    @classmethod
    def of(cls, placement: NodePlacement) -> Scheduling:
        return cls(dict(placement.node_selector), copy.deepcopy(placement.affinity) or None,
                   tuple(copy.deepcopy(placement.tolerations)))


NO_PLACEMENT = Scheduling()  # the default of every pod builder: no CDI resource asks for a placement


def merged(workload: Scheduling, own: Scheduling) -> Object:
    """The pod spec's scheduling fields (only those that are set) for a pod with `own` needs under `workload`."""
    fields: Object = {}
    selector = {**workload.node_selector, **own.node_selector}
    if selector:
        fields["nodeSelector"] = selector
    affinity = _affinity(workload.affinity or {}, own.affinity or {})
    if affinity:
        fields["affinity"] = affinity
    tolerations = [dict(t) for t in workload.tolerations]
    tolerations += [dict(t) for t in own.tolerations if dict(t) not in tolerations]
    if tolerations:
        fields["tolerations"] = copy.deepcopy(tolerations)
    if own.node_name:
        fields["nodeName"] = own.node_name
    return fields


def _affinity(workload: Mapping[str, Any], own: Mapping[str, Any]) -> Object:
    result: Object = copy.deepcopy(dict(workload))
    for section, key in _APPENDED:
        extra = (own.get(section) or {}).get(key) or []
        if extra:
            target = result.setdefault(section, {})
            target[key] = [*(target.get(key) or []), *copy.deepcopy(extra)]
    own_required = ((own.get("nodeAffinity") or {}).get(_REQUIRED) or {}).get("nodeSelectorTerms") or []
    if own_required:
        node = result.setdefault("nodeAffinity", {})
        terms = (node.get(_REQUIRED) or {}).get("nodeSelectorTerms") or []
        node[_REQUIRED] = {"nodeSelectorTerms": _and_terms(terms, own_required) if terms
                           else copy.deepcopy(list(own_required))}
    return result


def _and_terms(left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]) -> list[Object]:
    """(l1 OR l2) AND (r1 OR r2) as ORed terms: each pair's requirements together."""
    terms = []
    for a in left:
        for b in right:
            term: Object = {}
            for key in ("matchExpressions", "matchFields"):
                both = [*copy.deepcopy(a.get(key) or []), *copy.deepcopy(b.get(key) or [])]
                if both:
                    term[key] = both
            terms.append(term)
    return terms


def workload_of(cdi: Object | None) -> Scheduling:
    """The workload placement a CDI resource asks for; none when it asks for none or cannot be read."""
    raw = ((cdi or {}).get("spec") or {}).get("workload") or {}
    try:
        return Scheduling.of(NodePlacement.model_validate(raw))
    except ValidationError as e:
        log.warning("CDI %s: spec.workload cannot be read, worker pods get no placement: %s", name_of(cdi or {}), e)
        return Scheduling()


async def workload_placement(cluster: Cluster) -> Scheduling:
    """The active CDI resource's `spec.workload`, read now (every worker pod creation reads it afresh)."""
    return workload_of(await active_cdi_of(cluster))
