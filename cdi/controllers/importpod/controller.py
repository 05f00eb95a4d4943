"""The PVC-level import controller (upstream's import-controller): for a PVC with import-source
annotations it names and creates the importer pod (with a scratch PVC when the importer asked for one),
then mirrors the pod's state onto the PVC's annotations via `cdi.controllers.workerstate`, deleting the
pod when it is done, must be recreated, or has failed fatally. Keyed by PVC; watches importer pods."""

from __future__ import annotations

import logging

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.importpod.podspec import DEFAULT_IMAGE, ImporterPodInputs, importer_pod, importer_pod_name
from cdi.controllers.meta import (
    annotations_of,
    is_controlled_by,
    is_deleting,
    meta,
    name_of,
    uid_of,
)
from cdi.controllers.workerpod import (
    annotate,
    config_view,
    create_scratch,
    delete_quietly,
    scratch_claim_name,
    waiting_for_consumer,
)
from cdi.controllers.workerstate import observe_importer
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "import-controller"
CDI_API = "cdi.kubevirt.io/v1beta1"


def is_import_target(pvc: Object) -> bool:
    notes = annotations_of(pvc)
    return ann.ANN_ENDPOINT in notes or ann.ANN_SOURCE in notes


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
        if await waiting_for_consumer(self._cluster, pvc):
            return DONE
        pod_name = notes.get(ann.ANN_IMPORT_POD)
        if not pod_name:
            await annotate(self._cluster, pvc, {ann.ANN_IMPORT_POD: importer_pod_name(name_of(pvc))})
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
        await annotate(self._cluster, pvc, observation.annotations)
        for type_, reason, message in observation.events:
            await self._event(pvc, type_, reason, message)
        if observation.delete_pod:
            await delete_quietly(self._cluster, "v1", "Pod", name_of(pod), meta(pod)["namespace"])
        return DONE

    async def _create_pod(self, pvc: Object, pod_name: str) -> None:
        config = await config_view(self._cluster)
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
            await create_scratch(self._cluster, pvc, pod, config)
            await annotate(self._cluster, pvc, {ann.ANN_BOUND_CONDITION: "false",
                                       ann.ANN_BOUND_CONDITION_REASON: "CreatingScratchSpace",
                                       ann.ANN_BOUND_CONDITION_MESSAGE: "Creating scratch space"})

    async def _event(self, obj: Object, type_: str, reason: str, message: str) -> None:
        await record_event(self._cluster, obj, type_, reason, message, component=COMPONENT, clock=self._clock.now)


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"), label_selector={ann.LABEL_COMPONENT: "importer"})
    return [ControllerSpec("import-controller", "v1", "PersistentVolumeClaim",
                           ImportPodReconciler(cluster, clock, image=image), watches=[pods], workers=3)]
