"""What the PVC-level worker controllers (import and upload) share: the reconcile skeleton
(`WorkerPodReconciler`), waiting for a WaitForFirstConsumer claim, patching the worker's state onto the
PVC's annotations, reading the CDIConfig, the scratch PVC a worker pod gets, and deleting a pod.
Used by `cdi.controllers.importpod.controller` and `cdi.controllers.upload.controller`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import (
    annotations_of,
    controller_reference,
    is_controlled_by,
    is_deleting,
    meta,
    name_of,
    namespace_of,
    storage_request,
)
from cdi.controllers.workerstate import observe_worker
from cdi.runtime.types import DONE, Clock, Key, Result
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


async def add_missing_labels(cluster: Cluster, obj: Object, wanted: dict[str, str]) -> None:
    """Add the labels `obj` does not have yet (upstream never overwrites one a user set)."""
    current = dict((obj.get("metadata") or {}).get("labels") or {})
    missing = {k: v for k, v in wanted.items() if k not in current}
    if missing:
        await cluster.patch(obj["apiVersion"], obj["kind"], name_of(obj), {"metadata": {"labels": missing}},
                            meta(obj).get("namespace"))


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


class WorkerPodReconciler(ABC):
    """The PVC-level worker controllers' common skeleton, keyed by PVC: skip PVCs that are not targets,
    are being deleted or wait for a first consumer; name the worker pod in an annotation; create the
    pod when it is missing (unless the work failed fatally); mirror the pod's state onto the PVC and
    delete the pod when it is done. Subclasses say what a target is, how the pod is named and made,
    and what happens once the work has succeeded."""

    component = "worker-controller"
    pod_annotation = ""
    success: tuple[str, str] = ("Succeeded", "")

    def __init__(self, cluster: Cluster, clock: Clock, *, image: str, events: EventSink | None = None) -> None:
        self._cluster = cluster
        self._clock = clock
        self._events = events or DirectEvents(cluster, clock.now)
        self._image = image

    @abstractmethod
    def is_target(self, pvc: Object) -> bool:
        """Whether this controller serves the PVC."""

    @abstractmethod
    def default_pod_name(self, pvc: Object) -> str:
        """The worker pod's name when the PVC does not name one yet."""

    @abstractmethod
    async def create(self, pvc: Object, pod_name: str) -> None:
        """Create the worker pod (and what it needs) for the PVC."""

    async def completed(self, pvc: Object, pod_name: str) -> None:
        """Called on every reconcile once the PVC says the work succeeded: the finished pod goes, unless
        the PVC asks to keep it. Here rather than where the success is seen, as upstream's cleanup: the
        reconcile that writes the success makes one write, and a controller stopped between that write
        and the delete deletes the pod when it next looks (the PVC's update wakes it at once)."""
        if annotations_of(pvc).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) != "true":
            await self._end_worker_of(pvc, pod_name)

    async def foreign_pod(self, pvc: Object, pod_name: str) -> None:
        """A pod of the worker's name exists that this PVC does not control; by default, wait for it."""
        return

    async def reconcile(self, key: Key) -> Result:
        try:
            pvc = await self._cluster.get("v1", "PersistentVolumeClaim", key.name, key.namespace)
        except NotFound:
            return DONE
        notes = annotations_of(pvc)
        if not self.is_target(pvc):
            return DONE
        pod_name = notes.get(self.pod_annotation) or self.default_pod_name(pvc)
        if is_deleting(pvc):
            # A claim in use by a pod is kept by Kubernetes' PVC protection until the pod is gone, and the pod
            # (owned by the claim) would be collected only after the claim: end the worker so both can go.
            await self._end_worker_of(pvc, pod_name)
            return DONE
        if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
            await self.completed(pvc, pod_name)
            return DONE
        if await waiting_for_consumer(self._cluster, pvc):
            return DONE
        # The pod's name is deterministic, so it is recorded on the claim with the first observation of the
        # pod (one patch fewer per claim than writing it before creating the pod, as upstream does).
        try:
            pod = await self._cluster.get("v1", "Pod", pod_name, key.namespace)
        except NotFound:
            if notes.get(ann.ANN_IMPORT_FATAL_ERROR) != "true":
                await self.create(pvc, pod_name)
            return DONE
        if not is_controlled_by(pod, pvc):
            await self.foreign_pod(pvc, pod_name)
            return Result(requeue_after=10)
        if is_deleting(pod):
            return Result(requeue_after=1)
        observation = observe_worker(pvc, pod, self.success)
        await add_missing_labels(self._cluster, pvc, observation.labels)  # before the phase says Succeeded
        await annotate(self._cluster, pvc, {self.pod_annotation: pod_name, **observation.annotations})
        for type_, reason, message in observation.events:
            await self.event(pvc, type_, reason, message)
        if observation.delete_pod and not observation.complete:  # a finished pod goes in `completed`
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, key.namespace)
        return DONE

    async def _end_worker_of(self, pvc: Object, pod_name: str) -> None:
        try:
            pod = await self._cluster.get("v1", "Pod", pod_name, namespace_of(pvc))
        except NotFound:
            return
        if is_controlled_by(pod, pvc) and not is_deleting(pod):
            await delete_quietly(self._cluster, "v1", "Pod", pod_name, namespace_of(pvc))

    async def event(self, obj: Object, type_: str, reason: str, message: str) -> None:
        await self._events.record(obj, type_, reason, message, component=self.component)
