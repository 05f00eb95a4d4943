"""The PVC-level upload controller (upstream's upload-controller): for a PVC marked as an upload target
it creates the upload server pod, its Service, its TLS Secret (a server certificate from the control
plane's CA, and that CA to check the proxy's client certificate) and a scratch PVC, then mirrors the
pod's state onto the PVC's annotations (phase, readiness, restarts, Running condition) — the
DataVolume upload controller and the upload proxy read them. When the upload has succeeded the pod and
Service are deleted. Keyed by PVC; watches upload pods."""

from __future__ import annotations

import logging

from cdi.cluster.errors import AlreadyExists
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import upload_resource_name
from cdi.controllers.meta import annotations_of, meta, name_of, namespace_of
from cdi.controllers.upload.credentials import CDI_NAMESPACE, ensure_ca, upload_server_secret
from cdi.controllers.upload.podspec import DEFAULT_IMAGE, UploadPodInputs, upload_pod, upload_service
from cdi.controllers.workerpod import (
    WorkerPodReconciler,
    config_view,
    create_scratch,
    delete_quietly,
    scratch_claim_name,
)
from cdi.controllers.workerstate import UPLOAD_SUCCESS
from cdi.runtime.types import Clock, ControllerSpec, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "upload-controller"


def is_upload_target(pvc: Object) -> bool:
    return ann.ANN_UPLOAD_REQUEST in annotations_of(pvc)


class UploadReconciler(WorkerPodReconciler):
    component = COMPONENT
    pod_annotation = ann.ANN_UPLOAD_POD
    success = UPLOAD_SUCCESS

    def __init__(self, cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                 namespace: str = CDI_NAMESPACE) -> None:
        super().__init__(cluster, clock, image=image)
        self._cdi_namespace = namespace  # where the upload-server CA lives

    def is_target(self, pvc: Object) -> bool:
        return is_upload_target(pvc)

    def default_pod_name(self, pvc: Object) -> str:
        return upload_resource_name(name_of(pvc))

    async def create(self, pvc: Object, pod_name: str) -> None:
        config = await config_view(self._cluster)
        inputs = UploadPodInputs(pvc=pvc, pod_name=pod_name, tls_secret=pod_name, config=config,
                                 scratch_claim=scratch_claim_name(name_of(pvc)), image=self._image)
        ca = await ensure_ca(self._cluster, self._clock.now(), self._cdi_namespace)
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

    async def completed(self, pvc: Object, pod_name: str) -> None:
        """Done: the upload server, its Service and its certificate are no longer needed."""
        namespace = meta(pvc)["namespace"]
        if annotations_of(pvc).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) != "true":
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, namespace)
        service = UploadPodInputs(pvc, pod_name, pod_name, await config_view(self._cluster)).service
        await delete_quietly(self._cluster, "v1", "Service", service, namespace)
        await delete_quietly(self._cluster, "v1", "Secret", pod_name, namespace)


def controllers(cluster: Cluster, clock: Clock, *, image: str = DEFAULT_IMAGE,
                namespace: str = CDI_NAMESPACE) -> list[ControllerSpec]:
    pods = Watch("v1", "Pod", owner_keys("PersistentVolumeClaim"),
                 label_selector={ann.LABEL_COMPONENT: str(ann.Component.UPLOAD_SERVER)})
    return [ControllerSpec("upload-controller", "v1", "PersistentVolumeClaim",
                           UploadReconciler(cluster, clock, image=image, namespace=namespace), watches=[pods],
                           workers=3)]
