"""The UploadTokenRequest "API": upstream serves `upload.cdi.kubevirt.io/v1beta1` UploadTokenRequests from
its aggregated apiserver, answering a create with a signed token in `status.token`. In the embedded
mode the request is an object and this controller answers it: it signs a PS256 token for the named
PVC with the control plane's key ring, and deletes the request once the token has expired."""

from __future__ import annotations

import logging
from datetime import datetime

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.controllers.meta import is_deleting, meta
from cdi.controllers.upload.credentials import ensure_key_ring
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result
from cdi.tokens import DEFAULT_LIFETIME, LEEWAY, issue_token, upload_payload

log = logging.getLogger(__name__)
UTR_API = "upload.cdi.kubevirt.io/v1beta1"


class UploadTokenRequestReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._cluster = cluster
        self._clock = clock
        self._lifetime = lifetime

    async def reconcile(self, key: Key) -> Result:
        try:
            request = await self._cluster.get(UTR_API, "UploadTokenRequest", key.name, key.namespace)
        except NotFound:
            return DONE
        if is_deleting(request):
            return DONE
        if (request.get("status") or {}).get("token"):
            return await self._expire(request, key)
        pvc = str((request.get("spec") or {}).get("pvcName") or "")
        if not pvc:
            log.warning("UploadTokenRequest %s has no spec.pvcName", key)
            return DONE
        ring = await ensure_key_ring(self._cluster, self._clock.now())
        token = issue_token(ring.current, upload_payload(key.namespace, pvc), self._clock.now().timestamp(),
                            self._lifetime)
        await self._cluster.update({**request, "status": {"token": token}})
        return Result(requeue_after=self._lifetime + LEEWAY)

    async def _expire(self, request: dict[str, object], key: Key) -> Result:
        created = meta(request).get("creationTimestamp")
        age = self._age(str(created)) if created else 0.0
        if age < self._lifetime + LEEWAY:
            return Result(requeue_after=self._lifetime + LEEWAY - age)
        try:
            await self._cluster.delete(UTR_API, "UploadTokenRequest", key.name, key.namespace)
        except NotFound:
            pass
        return DONE

    def _age(self, created: str) -> float:
        stamp = datetime.fromisoformat(created.replace("Z", "+00:00"))
        return (self._clock.now() - stamp).total_seconds()


def controllers(cluster: Cluster, clock: Clock) -> list[ControllerSpec]:
    return [ControllerSpec("uploadtokenrequest-controller", UTR_API, "UploadTokenRequest",
                           UploadTokenRequestReconciler(cluster, clock), workers=2)]
