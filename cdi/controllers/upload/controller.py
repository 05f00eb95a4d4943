"""The PVC-level upload controller (upstream's upload-controller): for a PVC marked as an upload target
it creates the upload server pod, its Service, its TLS Secret (a server certificate from the control
plane's CA, and that CA to check the proxy's client certificate) and a scratch PVC, then mirrors the
pod's state onto the PVC's annotations (phase, readiness, restarts, Running condition) — the
DataVolume upload controller and the upload proxy read them. When the upload has succeeded the pod and
Service are deleted. Keyed by PVC; watches upload pods."""

from __future__ import annotations

import logging

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import upload_resource_name
from cdi.controllers.meta import annotations_of, is_controlled_by, is_deleting, meta, name_of, namespace_of
from cdi.controllers.upload.credentials import ensure_ca, upload_server_secret
from cdi.controllers.upload.podspec import DEFAULT_IMAGE, UploadPodInputs, upload_pod, upload_service
from cdi.controllers.workerpod import (
    annotate,
    config_view,
    create_scratch,
    delete_quietly,
    scratch_claim_name,
    waiting_for_consumer,
)
from cdi.controllers.workerstate import UPLOAD_SUCCESS, observe_worker
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "upload-controller"


def is_upload_target(pvc: Object) -> bool:
    return ann.ANN_UPLOAD_REQUEST in annotations_of(pvc)


class UploadReconciler:
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
        if not is_upload_target(pvc) or is_deleting(pvc) or await waiting_for_consumer(self._cluster, pvc):
            return DONE
        pod_name = notes.get(ann.ANN_UPLOAD_POD) or upload_resource_name(name_of(pvc))
        if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            await self._clean_up(pvc, pod_name)
            return DONE
        if ann.ANN_UPLOAD_POD not in notes:
            await annotate(self._cluster, pvc, {ann.ANN_UPLOAD_POD: pod_name})
            return DONE
        try:
            pod = await self._cluster.get("v1", "Pod", pod_name, key.namespace)
        except NotFound:
            if notes.get(ann.ANN_IMPORT_FATAL_ERROR) != "true":
                await self._create(pvc, pod_name)
            return DONE
        if not is_controlled_by(pod, pvc) or is_deleting(pod):
            return Result(requeue_after=1)
        observation = observe_worker(pvc, pod, UPLOAD_SUCCESS)
        await annotate(self._cluster, pvc, observation.annotations)
        for type_, reason, message in observation.events:
            await record_event(self._cluster, pvc, type_, reason, message, component=COMPONENT, clock=self._clock.now)
        if observation.delete_pod:
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, key.namespace)
        return DONE

    async def _create(self, pvc: Object, pod_name: str) -> None:
        config = await config_view(self._cluster)
        inputs = UploadPodInputs(pvc=pvc, pod_name=pod_name, tls_secret=pod_name, config=config,
                                 scratch_claim=scratch_claim_name(name_of(pvc)), image=self._image)
        ca = await ensure_ca(self._cluster, self._clock.now())
        for obj in (upload_server_secret(pvc, pod_name, inputs.service, ca, self._clock.now()),
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
        await create_scratch(self._cluster, pvc, pod, config)

    async def _clean_up(self, pvc: Object, pod_name: str) -> None:
        """Done: the upload server, its Service and its certificate are no longer needed."""
        namespace = meta(pvc)["namespace"]
        if annotations_of(pvc).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) != "true":
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, namespace)
        service = UploadPodInputs(pvc, pod_name, pod_name, await config_view(self._cluster)).service
        await delete_quietly(self._cluster, "v1", "Service", service, namespace)
        await delete_quietly(self._cluster, "v1", "Secret", pod_name, namespace)


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"),
                 label_selector={ann.LABEL_COMPONENT: str(ann.Component.UPLOAD_SERVER)})
    return [ControllerSpec("upload-controller", "v1", "PersistentVolumeClaim",
                           UploadReconciler(cluster, clock, image=image), watches=[pods], workers=3)]
