"""PVC′: the temporary claim a population runs on, and what the target learns from it. Pure.

Upstream's populator base (`populator-base.go`): the target claim must be ready for population (a
storage class that exists and is not in-tree, and on a WaitForFirstConsumer class a selected node
unless immediate binding was requested — `readiness`); then PVC′ `prime-<target uid>` is created in
the target's namespace with the target's access modes, request, class and volume mode, owned by the
target (so it is collected with it), labelled to be left out of backups, asking for immediate
binding, on the target's selected node, carrying the target's pass-through annotations and the
source's (`sources.PopulatorKind.prime_annotations`) — `prime_claim`. While the PVC-level controllers
work on PVC′, the worker's state is mirrored onto the target (`mirrored_annotations`), labels the
worker found included (`copied_labels`), and PVC′'s events are repeated on the target, prefixed
`[prime-<uid>] : ` (`forwarded_events`). `cdi.controllers.populators.plan` uses all of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.meta import annotations_of, controller_reference, labels_of, name_of, namespace_of, uid_of
from cdi.controllers.populators.sources import KINDS

ANN_MIGRATED_TO = "pv.kubernetes.io/migrated-to"  # Kubernetes' CSI-migration mark on a claim
IN_TREE_PREFIX = "kubernetes.io/"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

# Target annotations PVC′ inherits: how worker pods are placed, named on the network and kept.
INHERITED = (*ann.POD_PASSTHROUGH_ANNOTATIONS, ann.ANN_POD_RETAIN_AFTER_COMPLETION, ann.ANN_PRIORITY_CLASS_NAME,
             ann.ANN_POD_SERVICE_ACCOUNT_NAME, ann.ANN_VDDK_EXTRA_ARGS, ann.ANN_VDDK_INIT_IMAGE_URL,
             ann.ANN_SELECTED_NODE)
# PVC′ annotations the target shows while (and after) the worker runs (upstream's desiredAnnotations, plus
# our last-failure note and the bound condition the worker controllers keep).
MIRRORED = (ann.ANN_POD_PHASE, ann.ANN_POD_READY, ann.ANN_POD_RESTARTS, ann.ANN_POD_LAST_FAILURE,
            ann.ANN_POD_SCHEDULABLE, ann.ANN_RUNNING_CONDITION, ann.ANN_RUNNING_CONDITION_MESSAGE,
            ann.ANN_RUNNING_CONDITION_REASON, ann.ANN_BOUND_CONDITION, ann.ANN_BOUND_CONDITION_MESSAGE,
            ann.ANN_BOUND_CONDITION_REASON, ann.ANN_PREALLOCATION_REQUESTED, ann.ANN_PREALLOCATION_APPLIED,
            ann.ANN_IMPORT_FATAL_ERROR, ann.ANN_CURRENT_CHECKPOINT, ann.ANN_MULTI_STAGE_IMPORT_DONE)
_COPIED_LABEL = re.compile(ann.COPIED_LABEL_PATTERN)
NOT_FORWARDED = ("ClaimMisbound",)  # PVC′ losing its volume to the target is the point, not news

EventLine = tuple[str, str, str]  # type, reason, message


def prime_name(target: Object) -> str:
    return f"prime-{uid_of(target)}"


@dataclass(frozen=True)
class Wait:
    """Not ready yet; `requeue_after` None: a watched change (the claim, PVC′) brings us back."""

    why: str
    requeue_after: float | None = None


@dataclass(frozen=True)
class Refuse:
    """Not populatable as it stands: a Warning event with `reason`, looked at again later."""

    reason: str
    message: str


def readiness(target: Object, storage_class: Object | None) -> Wait | Refuse | None:
    """Upstream's claimReadyForPopulation; None when the claim may be populated now."""
    spec, notes = target.get("spec") or {}, annotations_of(target)
    class_name = spec.get("storageClassName")
    if class_name is None:
        return Wait("the claim has no storage class yet", 10.0)
    if class_name == "":
        return Refuse("ClaimNotValid", "a claim populated by CDI needs a storage class (storageClassName is empty)")
    if storage_class is None:
        return Wait(f"storage class {class_name} not found", 10.0)
    provisioner = str(storage_class.get("provisioner") or "")
    if provisioner.startswith(IN_TREE_PREFIX) and ANN_MIGRATED_TO not in notes:
        return Refuse("StorageClassNotSupported", f"storage class {class_name} uses the in-tree provisioner "
                      f"{provisioner}, which cannot be populated; use a CSI storage class")
    if storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER and not notes.get(ann.ANN_SELECTED_NODE) \
            and notes.get(ann.ANN_IMMEDIATE_BINDING) != "true":
        return Wait("waiting for the claim's first consumer")
    return None


def prime_claim(target: Object, source_annotations: dict[str, str]) -> Object:
    """PVC′ for the target (see the module docstring)."""
    spec, notes = target.get("spec") or {}, annotations_of(target)
    prime_spec: dict[str, Any] = {"accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                                  "resources": {"requests": dict((spec.get("resources") or {}).get("requests") or {})},
                                  "volumeMode": spec.get("volumeMode") or "Filesystem",
                                  "storageClassName": spec.get("storageClassName")}
    annotations = {key: notes[key] for key in INHERITED if key in notes}
    annotations.update({**source_annotations, ann.ANN_IMMEDIATE_BINDING: "true", ann.ANN_POD_RESTARTS: "0"})
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": prime_name(target), "namespace": namespace_of(target),
                         "labels": {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_EXCLUDE_FROM_VELERO_BACKUP: "true"},
                         "annotations": annotations, "ownerReferences": [controller_reference(target)]},
            "spec": prime_spec}


def is_prime_of_ours(claim: Object) -> bool:
    """PVC′ of the import or upload populator (the clone populator's temporary claims are not)."""
    return annotations_of(claim).get(ann.ANN_POPULATOR_KIND) in KINDS


def mirrored_annotations(prime: Object, target: Object) -> dict[str, str]:
    """The worker state on PVC′ that the target does not show yet."""
    source, current = annotations_of(prime), annotations_of(target)
    return {key: source[key] for key in MIRRORED if key in source and current.get(key) != source[key]}


def copied_labels(prime: Object, target: Object) -> dict[str, str]:
    """Labels the worker put on PVC′ (a registry image's default instance type) that the target lacks."""
    current = labels_of(target)
    return {key: value for key, value in labels_of(prime).items()
            if _COPIED_LABEL.match(key) and key not in current}


def forwarded_events(prime: Object, prime_events: tuple[EventLine, ...],
                     target_events: tuple[EventLine, ...]) -> list[EventLine]:
    """PVC′'s events the target does not carry yet, as upstream copies them: same type and reason, the
    message prefixed with PVC′'s name; each once (the target's own events are the memory)."""
    seen = {(reason, message) for _, reason, message in target_events}
    lines: list[EventLine] = []
    for type_, reason, message in prime_events:
        line = (type_, reason, f"[{name_of(prime)}] : {message}")
        if reason not in NOT_FORWARDED and (reason, line[2]) not in seen and line not in lines:
            lines.append(line)
    return lines


def volume_name(claim: Object | None) -> str | None:
    value = ((claim or {}).get("spec") or {}).get("volumeName")
    return str(value) if value else None


def is_bound(claim: Object) -> bool:
    return bool(volume_name(claim)) and (claim.get("status") or {}).get("phase") == "Bound"


def describe(claim: Object) -> str:
    return f"{namespace_of(claim)}/{name_of(claim)}"
