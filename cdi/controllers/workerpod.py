"""What the PVC-level worker controllers (import and upload) share: waiting for a WaitForFirstConsumer
claim, patching the worker's state onto the PVC's annotations, reading the CDIConfig, the scratch PVC
a worker pod gets, and deleting a finished pod. Used by `cdi.controllers.importpod.controller` and
`cdi.controllers.upload.controller`."""

from __future__ import annotations

from typing import Any

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, controller_reference, meta, name_of, storage_request
from cdi.sizing import ALIGN, required_space, round_up, usable_space

CDI_API = "cdi.kubevirt.io/v1beta1"


def scratch_claim_name(pvc_name: str) -> str:
    return f"{pvc_name}-scratch"


async def waiting_for_consumer(cluster: Cluster, pvc: Object) -> bool:
    """Honour WaitForFirstConsumer: no worker until the claim is bound, unless immediate binding was
    requested (then the worker pod itself is the first consumer)."""
    if (pvc.get("status") or {}).get("phase") == "Bound":
        return False
    if annotations_of(pvc).get(ann.ANN_IMMEDIATE_BINDING) == "true":
        return False
    class_name = (pvc.get("spec") or {}).get("storageClassName")
    if not class_name:
        return False
    try:
        storage_class = await cluster.get("storage.k8s.io/v1", "StorageClass", class_name)
    except NotFound:
        return False
    return storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"


async def annotate(cluster: Cluster, pvc: Object, wanted: dict[str, str]) -> None:
    current = annotations_of(pvc)
    changes = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changes:
        await cluster.patch("v1", "PersistentVolumeClaim", name_of(pvc), {"metadata": {"annotations": changes}},
                            meta(pvc)["namespace"])


async def config_view(cluster: Cluster) -> ConfigView:
    try:
        return ConfigView.of(await cluster.get(CDI_API, "CDIConfig", CONFIG_NAME))
    except NotFound:
        return ConfigView()


def scratch_claim(pvc: Object, pod: Object, config: ConfigView) -> Object:
    """Upstream's scratch PVC: big enough for the target's usable space at the scratch class's overhead,
    owned by the pod so it goes away with it."""
    spec = pvc.get("spec") or {}
    target_class = spec.get("storageClassName")
    virtual = usable_space(config.overhead(target_class), storage_request(spec) or 0)
    scratch_class = config.scratch_storage_class or target_class
    size = round_up(required_space(config.overhead(scratch_class), virtual), ALIGN)
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                                  "resources": {"requests": {"storage": str(size)}}}
    if scratch_class:
        claim_spec["storageClassName"] = scratch_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": scratch_claim_name(name_of(pvc)), "namespace": meta(pvc)["namespace"],
                         "labels": {ann.LABEL_APP: ann.APP_NAME, ann.LABEL_EXCLUDE_FROM_VELERO_BACKUP: "true"},
                         "ownerReferences": [controller_reference(pod)]},
            "spec": claim_spec}


async def create_scratch(cluster: Cluster, pvc: Object, pod: Object, config: ConfigView) -> None:
    try:
        await cluster.create(scratch_claim(pvc, pod, config))
    except AlreadyExists:
        pass


async def delete_quietly(cluster: Cluster, api_version: str, kind: str, name: str, namespace: str) -> None:
    try:
        await cluster.delete(api_version, kind, name, namespace)
    except NotFound:
        pass
