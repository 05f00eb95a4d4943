"""The PVC-level import controller (upstream's import-controller): for a PVC with import-source
annotations it names and creates the importer pod (with a scratch PVC when the importer asked for one),
then mirrors the pod's state onto the PVC's annotations via `podstate.observe_importer`, deleting the
pod when it is done, must be recreated, or has failed fatally. Keyed by PVC; watches importer pods."""

from __future__ import annotations

import logging
from typing import Any

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.config_view import ConfigView
from cdi.controllers.importpod.podspec import (
    DEFAULT_IMAGE,
    ImporterPodInputs,
    importer_pod,
    importer_pod_name,
    scratch_claim_name,
)
from cdi.controllers.meta import (
    annotations_of,
    controller_reference,
    is_controlled_by,
    is_deleting,
    meta,
    name_of,
    storage_request,
    uid_of,
)
from cdi.controllers.workerstate import observe_importer
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys
from cdi.sizing import ALIGN, required_space, round_up, usable_space

log = logging.getLogger(__name__)
COMPONENT = "import-controller"
CDI_API = "cdi.kubevirt.io/v1beta1"


def is_import_target(pvc: Object) -> bool:
    notes = annotations_of(pvc)
    return ann.ANN_ENDPOINT in notes or ann.ANN_SOURCE in notes


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


class ImportPodReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE) -> None:
        self._cluster = cluster
        self._clock = clock
        self._image = image

    async def reconcile(self, key: Key) -> Result:
        try:
            pvc = await self._cluster.get("v1", "PersistentVolumeClaim", key.name, key.namespace)
        except NotFound:
            return DONE
        notes = annotations_of(pvc)
        if not is_import_target(pvc) or is_deleting(pvc) or notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            return DONE
        if await self._waiting_for_consumer(pvc):
            return DONE
        pod_name = notes.get(ann.ANN_IMPORT_POD)
        if not pod_name:
            await self._annotate(pvc, {ann.ANN_IMPORT_POD: importer_pod_name(name_of(pvc))})
            return DONE
        try:
            pod = await self._cluster.get("v1", "Pod", pod_name, key.namespace)
        except NotFound:
            if notes.get(ann.ANN_IMPORT_FATAL_ERROR) != "true":
                await self._create_pod(pvc, pod_name)
            return DONE
        if not is_controlled_by(pod, pvc):
            await self._event(pvc, "Warning", "ImportTargetInUse", f"pod {pod_name} exists and is not an importer of "
                                                                   f"PersistentVolumeClaim {name_of(pvc)}")
            return Result(requeue_after=10)
        if is_deleting(pod):
            return Result(requeue_after=1)
        return await self._observe(pvc, pod)

    async def _observe(self, pvc: Object, pod: Object) -> Result:
        observation = observe_importer(pvc, pod)
        await self._annotate(pvc, observation.annotations)
        for type_, reason, message in observation.events:
            await self._event(pvc, type_, reason, message)
        if observation.delete_pod:
            try:
                await self._cluster.delete("v1", "Pod", name_of(pod), meta(pod)["namespace"])
            except NotFound:
                pass
        return DONE

    async def _waiting_for_consumer(self, pvc: Object) -> bool:
        """Honour WaitForFirstConsumer: no importer until the claim is bound, unless immediate binding
        was requested (then the importer pod itself is the first consumer)."""
        if (pvc.get("status") or {}).get("phase") == "Bound":
            return False
        if annotations_of(pvc).get(ann.ANN_IMMEDIATE_BINDING) == "true":
            return False
        class_name = (pvc.get("spec") or {}).get("storageClassName")
        if not class_name:
            return False
        try:
            storage_class = await self._cluster.get("storage.k8s.io/v1", "StorageClass", class_name)
        except NotFound:
            return False
        return storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"

    async def _create_pod(self, pvc: Object, pod_name: str) -> None:
        config = ConfigView.of(await self._config())
        notes = annotations_of(pvc)
        needs_scratch = notes.get(ann.ANN_REQUIRES_SCRATCH) == "true"
        owners = meta(pvc).get("ownerReferences") or []
        inputs = ImporterPodInputs(
            pvc=pvc, pod_name=pod_name, config=config, image=self._image,
            scratch_claim=scratch_claim_name(name_of(pvc)) if needs_scratch else None,
            owner_uid=str(owners[0]["uid"]) if len(owners) == 1 else uid_of(pvc),
            direct_io=notes.get(ann.ANN_REQUIRES_DIRECT_IO) == "true")
        try:
            pod = await self._cluster.create(importer_pod(inputs))
        except AlreadyExists:
            return
        log.info("created importer pod %s/%s", meta(pod)["namespace"], pod_name)
        if needs_scratch:
            try:
                await self._cluster.create(scratch_claim(pvc, pod, config))
            except AlreadyExists:
                pass
            await self._annotate(pvc, {ann.ANN_BOUND_CONDITION: "false",
                                       ann.ANN_BOUND_CONDITION_REASON: "CreatingScratchSpace",
                                       ann.ANN_BOUND_CONDITION_MESSAGE: "Creating scratch space"})

    async def _config(self) -> Object | None:
        try:
            return await self._cluster.get(CDI_API, "CDIConfig", CONFIG_NAME)
        except NotFound:
            return None

    async def _annotate(self, pvc: Object, wanted: dict[str, str]) -> None:
        current = annotations_of(pvc)
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if changes:
            await self._cluster.patch("v1", "PersistentVolumeClaim", name_of(pvc),
                                      {"metadata": {"annotations": changes}}, meta(pvc)["namespace"])

    async def _event(self, obj: Object, type_: str, reason: str, message: str) -> None:
        await record_event(self._cluster, obj, type_, reason, message, component=COMPONENT, clock=self._clock.now)


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"), label_selector={ann.LABEL_COMPONENT: "importer"})
    return [ControllerSpec("import-controller", "v1", "PersistentVolumeClaim",
                           ImportPodReconciler(cluster, clock, image=image), watches=[pods], workers=3)]
