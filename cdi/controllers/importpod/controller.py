"""The PVC-level import controller (upstream's import-controller): for a PVC with import-source
annotations it names and creates the importer pod (with a scratch PVC when the importer asked for one),
then mirrors the pod's state onto the PVC's annotations via `cdi.controllers.workerstate`, deleting the
pod when it is done, must be recreated, or has failed fatally. Keyed by PVC; watches importer pods."""

from __future__ import annotations

import logging

from cdi.cluster.errors import AlreadyExists
from cdi.cluster.events import EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.importpod.podspec import DEFAULT_IMAGE, ImporterPodInputs, importer_pod, importer_pod_name
from cdi.controllers.meta import (
    annotations_of,
    meta,
    name_of,
    uid_of,
)
from cdi.controllers.placement import workload_placement
from cdi.controllers.workerpod import (
    WorkerPodReconciler,
    annotate,
    config_view,
    create_scratch,
    scratch_claim_name,
)
from cdi.controllers.workerstate import IMPORT_SUCCESS
from cdi.runtime.types import Clock, ControllerSpec, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "import-controller"
CDI_API = "cdi.kubevirt.io/v1beta1"


def is_import_target(pvc: Object) -> bool:
    notes = annotations_of(pvc)
    return ann.ANN_ENDPOINT in notes or ann.ANN_SOURCE in notes


class ImportPodReconciler(WorkerPodReconciler):
    component = COMPONENT
    pod_annotation = ann.ANN_IMPORT_POD
    success = IMPORT_SUCCESS

    def __init__(self, cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                 events: EventSink | None = None) -> None:
        super().__init__(cluster, clock, image=image, events=events)

    def is_target(self, pvc: Object) -> bool:
        return is_import_target(pvc)

    def default_pod_name(self, pvc: Object) -> str:
        return importer_pod_name(name_of(pvc))

    async def foreign_pod(self, pvc: Object, pod_name: str) -> None:
        await self.event(pvc, "Warning", "ImportTargetInUse",
                         f"pod {pod_name} exists and is not an importer of PersistentVolumeClaim {name_of(pvc)}")

    async def create(self, pvc: Object, pod_name: str) -> None:
        config = await config_view(self._cluster)
        notes = annotations_of(pvc)
        needs_scratch = notes.get(ann.ANN_REQUIRES_SCRATCH) == "true"
        owners = meta(pvc).get("ownerReferences") or []
        inputs = ImporterPodInputs(
            pvc=pvc, pod_name=pod_name, config=config, image=self._image,
            scratch_claim=scratch_claim_name(name_of(pvc)) if needs_scratch else None,
            owner_uid=str(owners[0]["uid"]) if len(owners) == 1 else uid_of(pvc),
            direct_io=notes.get(ann.ANN_REQUIRES_DIRECT_IO) == "true",
            placement=await workload_placement(self._cluster))
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


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                events: EventSink | None = None) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"), label_selector={ann.LABEL_COMPONENT: "importer"})
    reconciler = ImportPodReconciler(cluster, clock, image=image, events=events)
    return [ControllerSpec("import-controller", "v1", "PersistentVolumeClaim", reconciler, watches=[pods], workers=3,
                           predicate=reconciler.is_target)]
