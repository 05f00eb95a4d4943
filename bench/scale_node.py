"""The scale benchmark's simulated node: what kwok does for Kubernetes scale tests, for CDI's objects.

No volume is provisioned and no importer runs. Two reconcilers on the benchmark process's own (uncounted)
client play the parts the controllers wait on:

- `VolumeBinder`, like the PV controller with a provisioner behind it: for each claim not yet Bound it
  creates a PersistentVolume claimed by it (hostPath, nothing behind it), sets the claim's
  `spec.volumeName` and marks it Bound with the volume's capacity.
- `Kubelet`, like kube-scheduler + kubelet: binds each pod whose claims are Bound to the benchmark's node
  with a `v1 Binding`, then reports it Running, and `run_seconds` later (how long the importer "runs")
  Succeeded with the termination message a successful blank import leaves (exit 0, reason Completed);
  a deleted pod's end is confirmed with a grace-period-0 delete, as kubelet does (a real API server
  keeps a bound pod until then). A real importer pod lives for seconds, so the controllers see each of
  its phases; with `run_seconds` 0 the phases come ~10 ms apart and the controllers, when they are
  behind, see them as one change and write less.

`bench.scale` runs them on a `cdi.runtime.manager.Manager`, so they are level-triggered reconcilers
reading through informer caches like the controllers they feed.
"""

from __future__ import annotations

import time
from typing import Any

from cdi.cluster.errors import AlreadyExists, Conflict, NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions, Object
from cdi.contracts.termination import TerminationMessage
from cdi.runtime.types import DONE, ControllerSpec, Key, Result

NODE = "scale-bench-node"
POD_IP = "10.244.0.2"
STARTED = "2026-01-01T00:00:00Z"
DONE_MESSAGE = TerminationMessage("Import Complete", scratch_space_required=False,
                                  preallocation_applied=False).to_json()


def node() -> Object:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {
        "kubernetes.io/hostname": NODE, "type": "kwok-like-simulated"}}}


def volume_for(claim: Object) -> Object:
    meta, spec = claim["metadata"], claim.get("spec") or {}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{meta['uid']}",
                         "annotations": {"pv.kubernetes.io/provisioned-by": "pycdi.local/hostpath"}},
            "spec": {"capacity": {"storage": spec["resources"]["requests"]["storage"]},
                     "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                     "volumeMode": spec.get("volumeMode") or "Filesystem",
                     "storageClassName": spec.get("storageClassName") or "",
                     "persistentVolumeReclaimPolicy": "Delete",
                     "hostPath": {"path": f"/var/lib/scale-bench/{meta['uid']}"},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"]}}}


class VolumeBinder:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    async def reconcile(self, key: Key) -> Result:
        try:
            claim = await self._cluster.get("v1", "PersistentVolumeClaim", key.name, key.namespace)
        except NotFound:
            return DONE
        spec = claim.get("spec") or {}
        if (claim.get("status") or {}).get("phase") == "Bound" or claim["metadata"].get("deletionTimestamp"):
            return DONE
        volume = volume_for(claim)
        if not spec.get("volumeName"):
            try:
                await self._cluster.create(volume)
            except AlreadyExists:
                pass
            await self._cluster.patch("v1", "PersistentVolumeClaim", key.name, {
                "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                             "pv.kubernetes.io/bound-by-controller": "yes"}},
                "spec": {"volumeName": volume["metadata"]["name"]}}, key.namespace)
        await self._cluster.patch_status("v1", "PersistentVolumeClaim", key.name, {"status": {
            "phase": "Bound", "capacity": volume["spec"]["capacity"],
            "accessModes": volume["spec"]["accessModes"]}}, key.namespace)
        return DONE


def container_status(name: str, image: str, state: dict[str, Any]) -> dict[str, Any]:
    running = "running" in state
    return {"name": name, "image": image, "imageID": "", "state": state, "lastState": {}, "ready": running,
            "started": running, "restartCount": 0}


class Kubelet:
    def __init__(self, cluster: Cluster, run_seconds: float = 0.0) -> None:
        self._cluster = cluster
        self._run_seconds = run_seconds
        self._running_since: dict[Key, float] = {}

    async def reconcile(self, key: Key) -> Result:
        try:
            pod = await self._cluster.get("v1", "Pod", key.name, key.namespace)
        except NotFound:
            return DONE
        spec, phase = pod.get("spec") or {}, (pod.get("status") or {}).get("phase") or "Pending"
        try:
            if pod["metadata"].get("deletionTimestamp"):
                await self._cluster.delete("v1", "Pod", key.name, key.namespace,
                                          options=DeleteOptions(grace_period_seconds=0, uid=pod["metadata"]["uid"]))
            elif not spec.get("nodeName"):
                if not await self._claims_bound(pod):
                    return Result(requeue_after=0.5)  # the scheduler waits for the volumes
                await self._cluster.create({"apiVersion": "v1", "kind": "Binding",
                                           "metadata": {"name": key.name, "namespace": key.namespace},
                                           "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}})
            elif phase == "Pending":
                await self._status(pod, "Running", {"running": {"startedAt": STARTED}})
                self._running_since[key] = time.monotonic()
            elif phase == "Running":
                left = self._running_since.get(key, 0.0) + self._run_seconds - time.monotonic()
                if left > 0:
                    return Result(requeue_after=left)
                self._running_since.pop(key, None)
                await self._status(pod, "Succeeded", {"terminated": {
                    "exitCode": 0, "reason": "Completed", "message": DONE_MESSAGE,
                    "startedAt": STARTED, "finishedAt": STARTED}})
        except (NotFound, Conflict):
            pass  # gone or already moved on: the watch brings the next state
        return DONE

    async def _claims_bound(self, pod: Object) -> bool:
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim_name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim_name:
                continue
            try:
                claim = await self._cluster.get("v1", "PersistentVolumeClaim", claim_name, pod["metadata"]["namespace"])
            except NotFound:
                return False
            if (claim.get("status") or {}).get("phase") != "Bound":
                return False
        return True

    async def _status(self, pod: Object, phase: str, state: dict[str, Any]) -> None:
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        await self._cluster.patch_status("v1", "Pod", pod["metadata"]["name"], {"status": {
            "phase": phase, "hostIP": "10.0.0.2", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "startTime": STARTED,
            "containerStatuses": [container_status(str(container.get("name")), str(container.get("image")), state)],
        }}, pod["metadata"]["namespace"])


def node_simulator(cluster: Cluster, run_seconds: float = 0.0) -> list[ControllerSpec]:
    """The simulator's controllers, for a manager whose cached client is `cluster`; each importer pod
    runs `run_seconds`."""
    return [ControllerSpec("sim-volume-binder", "v1", "PersistentVolumeClaim", VolumeBinder(cluster), workers=4),
            ControllerSpec("sim-kubelet", "v1", "Pod", Kubelet(cluster, run_seconds), workers=4)]
