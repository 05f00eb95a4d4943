"""The PVC-level upload controller (upstream's upload-controller): for a PVC marked as an upload target
it creates the upload server pod, its Service, its TLS Secret (a server certificate from the control
plane's CA, and that CA to check the proxy's client certificate) and a scratch PVC, then mirrors the
pod's state onto the PVC's annotations (phase, readiness, restarts, Running condition) — the
DataVolume upload controller and the upload proxy read them. When the upload has succeeded the pod and
Service are deleted. Keyed by PVC; watches upload pods.

A host-assisted clone target (`k8s.io/CloneRequest`) is served the same way, as upstream does: its
upload server accepts only the clone's client certificate (`<srcNs>/<src>-<tgtNs>/<tgt>`) and gets no
scratch space; before its pod exists the source must exist and fit (`clonetarget.incompatibility`,
else a Warning and no pod). `cdi.controllers.hostclone` starts the source pod once this pod is ready."""

from __future__ import annotations

import logging

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME, upload_resource_name
from cdi.controllers.meta import annotations_of, is_deleting, meta, name_of, namespace_of
from cdi.controllers.placement import workload_placement
from cdi.controllers.upload.clonetarget import clone_client_name, clone_source_of, incompatibility, is_clone_target
from cdi.controllers.upload.credentials import CDI_NAMESPACE, upload_issuer, upload_server_secret
from cdi.controllers.upload.podspec import DEFAULT_IMAGE, UploadPodInputs, upload_pod, upload_service
from cdi.controllers.workerpod import (
    WorkerPodReconciler,
    config_view,
    create_scratch,
    delete_quietly,
    scratch_claim_name,
)
from cdi.controllers.workerstate import UPLOAD_SUCCESS
from cdi.runtime.types import Clock, ControllerSpec, Key, Result, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "upload-controller"
SOURCE_WAIT = 5.0  # seconds between looks for a clone source that does not exist yet
REFUSED_WAIT = 30.0  # a refused clone is looked at again (the source or target may be resized)


def is_upload_target(pvc: Object) -> bool:
    return ann.ANN_UPLOAD_REQUEST in annotations_of(pvc) or is_clone_target(pvc)


class UploadReconciler(WorkerPodReconciler):
    component = COMPONENT
    pod_annotation = ann.ANN_UPLOAD_POD
    success = UPLOAD_SUCCESS

    def __init__(self, cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                 namespace: str = CDI_NAMESPACE, events: EventSink | None = None) -> None:
        super().__init__(cluster, clock, image=image, events=events)
        self._cdi_namespace = namespace  # where the upload-server CA lives

    def is_target(self, pvc: Object) -> bool:
        return is_upload_target(pvc)

    def default_pod_name(self, pvc: Object) -> str:
        return upload_resource_name(name_of(pvc))

    async def reconcile(self, key: Key) -> Result:
        waiting = await self._clone_precheck(key)
        return waiting if waiting is not None else await super().reconcile(key)

    async def _clone_precheck(self, key: Key) -> Result | None:
        """For a clone target whose upload pod does not exist yet: wait for the source, refuse a misfit."""
        try:
            pvc = await self._cluster.get("v1", "PersistentVolumeClaim", key.name, key.namespace)
        except NotFound:
            return None
        notes, source = annotations_of(pvc), clone_source_of(pvc)
        if source is None or ann.ANN_UPLOAD_REQUEST in notes or is_deleting(pvc) or ann.ANN_UPLOAD_POD in notes \
                or notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            return None
        try:
            source_pvc = await self._cluster.get("v1", "PersistentVolumeClaim", source[1], source[0])
        except NotFound:
            return Result(requeue_after=SOURCE_WAIT)
        refusal = incompatibility(source_pvc, pvc, await config_view(self._cluster))
        if refusal is None:
            return None
        await self.event(pvc, "Warning", refusal.reason, refusal.message)
        return Result(requeue_after=REFUSED_WAIT)

    async def create(self, pvc: Object, pod_name: str) -> None:
        config = await config_view(self._cluster)
        clone = is_clone_target(pvc) and ann.ANN_UPLOAD_REQUEST not in annotations_of(pvc)
        inputs = UploadPodInputs(pvc=pvc, pod_name=pod_name, tls_secret=pod_name, config=config,
                                 client_name=clone_client_name(pvc) if clone else UPLOAD_CLIENT_NAME,
                                 scratch_claim=None if clone else scratch_claim_name(name_of(pvc)), image=self._image,
                                 placement=await workload_placement(self._cluster))
        issuer = await upload_issuer(self._cluster, self._clock.now(), self._cdi_namespace)
        for obj in (upload_server_secret(pvc, pod_name, inputs.service, issuer, self._clock.now()),
                    upload_service(pvc, inputs.service)):
            try:
                await self._cluster.create(obj)
            except AlreadyExists:
                pass
        try:
            pod = await self._cluster.create(upload_pod(inputs))
        except AlreadyExists:
            return
        log.info("created upload server pod %s/%s", namespace_of(pvc), pod_name)
        if inputs.scratch_claim is not None:
            await create_scratch(self._cluster, pvc, pod, config)

    async def completed(self, pvc: Object, pod_name: str) -> None:
        """Done: the upload server, its Service and its certificate are no longer needed."""
        namespace = meta(pvc)["namespace"]
        await super().completed(pvc, pod_name)
        service = UploadPodInputs(pvc, pod_name, pod_name, await config_view(self._cluster)).service
        await delete_quietly(self._cluster, "v1", "Service", service, namespace)
        await delete_quietly(self._cluster, "v1", "Secret", pod_name, namespace)


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                namespace: str = CDI_NAMESPACE, events: EventSink | None = None) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"),
                 label_selector={ann.LABEL_COMPONENT: str(ann.Component.UPLOAD_SERVER)})
    reconciler = UploadReconciler(cluster, clock, image=image, namespace=namespace, events=events)
    return [ControllerSpec("upload-controller", "v1", "PersistentVolumeClaim", reconciler, watches=[pods], workers=3,
                           predicate=reconciler.is_target)]
