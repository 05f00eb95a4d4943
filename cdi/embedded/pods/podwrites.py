"""The pod runner's writes to the store: finalizer, pod IP, status and Events, each idempotent.

`PodWriter` is the thin apply layer under `kubelet`: it writes only what differs, and retries on
`Conflict` with a fresh read (the runner is the pod's only status writer, but controllers touch its
metadata). The pod IP is allocated under a lock against the live pods' recorded addresses and
written (with `startTime` and `hostIP`) before any process of the pod starts, so the allocation is
on the pod itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from cdi.cluster.errors import ApiError, Conflict, NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, DeleteOptions, Object
from cdi.embedded.pods.addresses import addresses_in_use, allocate
from cdi.embedded.pods.node import FINALIZER, HOST_IP, NODE_NAME
from cdi.embedded.pods.spec import PodInfo
from cdi.embedded.pods.status import ContainerView, pod_phase, pod_status
from cdi.embedded.semantics import format_time
from cdi.runtime.types import Clock

log = logging.getLogger(__name__)
_ATTEMPTS = 5


class PodWriter:
    def __init__(self, cluster: Cluster, clock: Clock) -> None:
        self._cluster = cluster
        self._clock = clock
        self._address_lock = asyncio.Lock()

    async def ensure_finalizer(self, pod: PodInfo) -> Object:
        """The pod, holding our finalizer."""
        return await self._edit_finalizers(pod, add=True) or await self._get(pod)

    async def drop_finalizer(self, pod: PodInfo) -> None:
        await self._edit_finalizers(pod, add=False)

    async def confirm_deletion(self, pod: PodInfo) -> None:
        """Kubelet's last word on a deleted pod: its containers are gone, remove it now (grace period 0).

        A real API server keeps a deleted pod of a node until then; the embedded store has removed it
        already, once the finalizer went."""
        with contextlib.suppress(NotFound, Conflict):
            await self._cluster.delete("v1", "Pod", pod.name, pod.namespace,
                                       options=DeleteOptions(grace_period_seconds=0, uid=pod.uid))

    async def ensure_address(self, obj: Object, pod: PodInfo) -> tuple[Object, str]:
        """The pod with its IP recorded in `status.podIP`, and the IP."""
        status = obj.get("status") or {}
        if status.get("podIP"):
            return obj, str(status["podIP"])
        async with self._address_lock:
            pods = (await self._cluster.list("v1", "Pod")).items
            ip = allocate(pod.uid, addresses_in_use(pods, except_uid=pod.uid))
            change: dict[str, Any] = {"podIP": ip, "podIPs": [{"ip": ip}], "hostIP": HOST_IP,
                                      "hostIPs": [{"ip": HOST_IP}]}
            if not status.get("startTime"):
                change["startTime"] = self._now()
            written = await self._cluster.patch_status("v1", "Pod", pod.name, {"status": change}, pod.namespace)
        return written, ip

    async def publish(self, obj: Object, pod: PodInfo, views: Sequence[ContainerView], *,
                      terminating: bool = False) -> str:
        """Write the status kubelet would for `views`, if it differs; returns the pod phase."""
        for attempt in range(_ATTEMPTS):
            previous = obj.get("status") or {}
            phase = pod_phase(pod.restart_policy, views, str(previous.get("phase") or ""), terminating)
            status = pod_status(previous, phase, views, pod_ip=str(previous.get("podIP") or ""),
                                start_time=str(previous.get("startTime") or ""), now=self._now())
            if status == previous:
                return phase
            try:
                await self._cluster.update_status({**obj, "status": status})
                return phase
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise
                obj = await self._get(pod)
            except NotFound:
                return phase
        return phase

    async def event(self, obj: Object, type_: str, reason: str, message: str, component: str) -> None:
        try:
            await record_event(self._cluster, obj, type_, reason, message, component=component,
                               clock=self._clock.now, host=NODE_NAME)
        except ApiError as e:
            log.warning("could not record event %s for pod %s: %s", reason, obj["metadata"].get("name"), e)

    async def _edit_finalizers(self, pod: PodInfo, *, add: bool) -> Object | None:
        """Add or remove our finalizer; the pod as written, or None when nothing was written."""
        for attempt in range(_ATTEMPTS):
            try:
                obj = await self._get(pod)
            except NotFound:
                return None
            meta = obj["metadata"]
            finalizers = list(meta.get("finalizers") or ())
            if meta.get("uid") != pod.uid:
                if add:
                    raise Conflict(f'pod "{pod.name}" was replaced by another of the same name')
                return None
            if (FINALIZER in finalizers) == add:
                return obj if add else None
            wanted = [*finalizers, FINALIZER] if add else [f for f in finalizers if f != FINALIZER]
            patch = {"metadata": {"finalizers": wanted or None, "resourceVersion": meta["resourceVersion"]}}
            try:
                return await self._cluster.patch("v1", "Pod", pod.name, patch, pod.namespace)
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise
            except NotFound:
                return None
        return None

    async def _get(self, pod: PodInfo) -> Object:
        return await self._cluster.get("v1", "Pod", pod.name, pod.namespace)

    def _now(self) -> str:
        return format_time(self._clock.now())
