"""What every worker pod (the importer and the upload server) has in common, as upstream builds both:
the PVC's owner reference, the creator annotation plus the defaults and the annotations a PVC passes
through (Multus networks, Istio…), `OnFailure` restarts, no service links, no service-account token, a non-root security
context, and the priority class (and, for importers, the service account) from the PVC's annotations;
the CDI resource's workload placement (`placement`), and for a populator's PVC′ the node its target was
scheduled to. `importpod.podspec` and `upload.podspec` build the container and volumes and call `worker_pod`."""

from __future__ import annotations

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.meta import annotations_of, controller_reference, namespace_of
from cdi.controllers.placement import NO_PLACEMENT, Scheduling, merged

WORKER_UID = 107  # upstream's images run as qemu (107)


def is_block(pvc: Object) -> bool:
    return (pvc.get("spec") or {}).get("volumeMode") == "Block"


def own_scheduling(pvc: Object) -> Scheduling:
    """What a worker pod needs of its node whatever the workload placement: upstream pins the worker of a
    populator's PVC′ to the node selected for it (`SetNodeNameIfPopulator`)."""
    notes = annotations_of(pvc)
    pinned = notes.get(ann.ANN_SELECTED_NODE, "") if ann.ANN_POPULATOR_KIND in notes else ""
    return Scheduling(node_name=pinned)


def worker_pod(pvc: Object, name: str, labels: dict[str, str], container: Object, volumes: list[Object],
               annotations: dict[str, str], *, service_account: bool = False,
               placement: Scheduling = NO_PLACEMENT) -> Object:
    """The Pod: `annotations` are the worker's own (its creator mark first), PVC pass-through ones added."""
    notes = annotations_of(pvc)
    passed: dict[str, str] = {k: notes[k] for k in ann.POD_PASSTHROUGH_ANNOTATIONS if k in notes}
    pod_annotations: dict[str, str] = {**annotations, **passed}
    # Workers never talk to the API server: no service-account token is mounted into them (upstream mounts
    # one; a compromised importer then holds a credential it has no use for).
    spec: Object = {"containers": [container], "volumes": volumes, "restartPolicy": "OnFailure",
                    "enableServiceLinks": False, "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID, "fsGroup": WORKER_UID}}
    if priority := notes.get(ann.ANN_PRIORITY_CLASS_NAME):
        spec["priorityClassName"] = priority
    if service_account and (account := notes.get(ann.ANN_POD_SERVICE_ACCOUNT_NAME)):
        spec["serviceAccountName"] = account
    spec.update(merged(placement, own_scheduling(pvc)))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace_of(pvc), "labels": labels, "annotations": pod_annotations,
                     "ownerReferences": [controller_reference(pvc)]},
        "spec": spec,
    }
