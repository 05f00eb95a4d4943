"""The upload proxy's view of the cluster: which upload server a PVC's upload goes to, and whether it
is ready. Implements `uploadproxy.resolver.UploadTargetResolver` from the PVC's annotations (written by
the upload controller) and the upload pod's status, for both backends. It addresses the pod directly
(`https://<podIP>:8443`) and checks its certificate against the upload Service's DNS name, which is
what the certificate carries. A claim filled by the upload populator (`dataSourceRef` naming a
VolumeUploadSource) is resolved to its PVC′, which `storage.populator.pvcPrime` names, as upstream's
proxy does; the target's own `Succeeded` (mirrored from PVC′) still answers "already finished"."""

from __future__ import annotations

from cdi.api.meta import CDI_GROUP
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import DEFAULT_LISTEN_PORT, upload_service_name
from cdi.controllers.meta import annotations_of, name_of
from uploadproxy.resolver import (
    UploadTarget,
    already_finished,
    invalid_content_type,
    not_upload_target,
    pod_not_ready,
    prime_missing,
    pvc_missing,
)

CONTENT_TYPES = ("kubevirt", "archive")
UPLOAD_SOURCE_KIND = "VolumeUploadSource"


def is_upload_populated(claim: Object) -> bool:
    ref = (claim.get("spec") or {}).get("dataSourceRef") or {}
    return ref.get("kind") == UPLOAD_SOURCE_KIND and ref.get("apiGroup") == CDI_GROUP


class ClusterUploadResolver:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def resolve(self, namespace: str, pvc: str) -> UploadTarget:
        try:
            claim = await self._cluster.get("v1", "PersistentVolumeClaim", pvc, namespace)
        except NotFound:
            raise pvc_missing(pvc) from None
        claim = await self._served_claim(claim, namespace, pvc)
        notes = annotations_of(claim)
        if ann.ANN_UPLOAD_REQUEST not in notes:
            raise not_upload_target(pvc)
        if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            raise already_finished(pvc)
        content_type = notes.get(ann.ANN_CONTENT_TYPE, "kubevirt")
        if content_type not in CONTENT_TYPES:
            raise invalid_content_type(pvc, content_type)
        pod_name = notes.get(ann.ANN_UPLOAD_POD)
        if not pod_name or notes.get(ann.ANN_POD_READY) != "true":
            raise pod_not_ready(pvc)
        try:
            pod = await self._cluster.get("v1", "Pod", pod_name, namespace)
        except NotFound:
            raise pod_not_ready(pvc) from None
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            raise pod_not_ready(pvc)
        return UploadTarget(url=f"https://{status['podIP']}:{DEFAULT_LISTEN_PORT}", archive=content_type == "archive",
                            server_hostname=f"{upload_service_name(name_of(claim))}.{namespace}.svc")

    async def _served_claim(self, claim: Object, namespace: str, pvc: str) -> Object:
        """The claim whose upload server takes the upload: PVC′ for a populated claim, else the claim itself
        (messages keep naming the claim the user asked for)."""
        if not is_upload_populated(claim):
            return claim
        notes = annotations_of(claim)
        if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            raise already_finished(pvc)
        prime = notes.get(ann.ANN_PVC_PRIME_NAME)
        if not prime:
            raise prime_missing(pvc)
        try:
            return await self._cluster.get("v1", "PersistentVolumeClaim", prime, namespace)
        except NotFound:
            raise prime_missing(pvc) from None
