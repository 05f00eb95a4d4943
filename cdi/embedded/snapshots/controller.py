"""The snapshot controller of the embedded CSI driver: `SnapshotReconciler` (keyed by VolumeSnapshot,
the snapshot-controller's part) and `ContentReconciler` (keyed by VolumeSnapshotContent, the
csi-snapshotter sidecar's part), each observe → pure plan (`cdi.embedded.snapshots.plan`,
`cdi.embedded.snapshots.content_plan`) → apply.

The node agent (`cdi.embedded.nodeagent`) adds `controllers(cluster, pool, clock)` when the cluster
serves `snapshot.storage.k8s.io/v1`. Snapshot data lives in the `StoragePool`
(`snapshot_volume`, `get_snapshot`, `delete_snapshot`); a content's snapshot handle is its own name.
The provisioner (`cdi.embedded.volumes.provisioner`) restores snapshots into new claims. Pool errors
become a Warning and a status error on the content (the snapshot mirrors it); retryable ones are
raised again so the runtime backs off.
"""

from __future__ import annotations

from typing import Any

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.snapshots.actions import (
    BindContent,
    ContentAction,
    CreateContent,
    DeleteContent,
    DeleteSnapshotData,
    Event,
    ProtectClaim,
    SetClassName,
    SetFinalizers,
    SetStatus,
    SnapshotAction,
    TakeSnapshot,
)
from cdi.embedded.snapshots.content_plan import ContentObservation, content_status, plan_content
from cdi.embedded.snapshots.plan import ClaimSource, SnapshotObservation, plan_snapshot
from cdi.embedded.snapshots.views import (
    FINALIZER_PVC,
    SNAPSHOT_API,
    VS,
    VS_CLASS,
    VSC,
    SnapshotView,
    content_name_for,
    parse_class,
    parse_content,
    parse_snapshot,
)
from cdi.embedded.volumes.errors import VolumeError
from cdi.embedded.volumes.keys import CSI_DRIVER_NAME
from cdi.embedded.volumes.objects import parse_claim, parse_volume, pod_claim_names, pod_finished
from cdi.embedded.volumes.pool import StoragePool
from cdi.embedded.volumes.tracking import EventOnce
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

PVC, PV, POD = ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume"), ("v1", "Pod")
POLL_SECONDS = 2.0


async def _get(cluster: Cluster, kind: tuple[str, str], name: str, namespace: str | None = None) -> Object | None:
    try:
        return await cluster.get(*kind, name, namespace)
    except NotFound:
        return None


def _driver_of(volume: Object) -> str:
    """A PV's CSI driver; PVs an earlier version of this provisioner stored (spec.local) count as its."""
    parsed = parse_volume(volume)
    return parsed.csi_driver or (CSI_DRIVER_NAME if parsed.ours else "")


class SnapshotReconciler:
    """Binds one VolumeSnapshot to its content and mirrors the content's status (module docstring)."""

    def __init__(self, cluster: Cluster, clock: Clock, events: EventOnce, driver: str = CSI_DRIVER_NAME) -> None:
        self._cluster, self._clock, self._events, self._driver = cluster, clock, events, driver

    async def reconcile(self, key: Key) -> Result:
        raw = await _get(self._cluster, VS, key.name, key.namespace)
        if raw is None:
            self._events.forget("VolumeSnapshot", key)
            return DONE
        plan = plan_snapshot(await self.observe(raw))
        for action in plan.actions:
            await self._apply(raw, action)
        return Result(requeue_after=POLL_SECONDS) if plan.requeue else DONE

    async def observe(self, raw: Object) -> SnapshotObservation:
        snapshot = parse_snapshot(raw)
        classes = tuple(parse_class(obj) for obj in (await self._cluster.list(*VS_CLASS)).items)
        claim = None
        if snapshot.pvc_name and (found := await _get(self._cluster, PVC, snapshot.pvc_name, snapshot.namespace)):
            parsed = parse_claim(found)
            volume = await _get(self._cluster, PV, parsed.volume_name) if parsed.volume_name else None
            protected = FINALIZER_PVC in (found["metadata"].get("finalizers") or ())
            if parsed.phase != "Bound" or volume is None:
                claim = ClaimSource(bound=False, protected=protected, deleting=parsed.deleting)
            else:
                handle = ((volume.get("spec") or {}).get("csi") or {}).get("volumeHandle") or parsed.volume_name
                claim = ClaimSource(True, _driver_of(volume), str(handle), parse_volume(volume).volume_mode.value,
                                    protected, parsed.deleting)
        content_name = snapshot.content_name or snapshot.bound_content or content_name_for(snapshot)
        content = await _get(self._cluster, VSC, content_name)
        restoring = any(_restores(obj, snapshot.name) for obj in
                        (await self._cluster.list(*PVC, snapshot.namespace)).items)
        siblings = any(_in_flight(obj, snapshot) for obj in (await self._cluster.list(*VS, snapshot.namespace)).items)
        return SnapshotObservation(snapshot, self._driver, self._clock.now(), classes, claim,
                                   parse_content(content) if content else None, restoring, siblings)

    async def _apply(self, raw: Object, action: SnapshotAction | ContentAction) -> None:
        meta = raw["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        match action:
            case Event(type_, reason, message):
                await self._events.record(raw, type_, reason, message)
            case SetFinalizers():
                await _patch_finalizers(self._cluster, VS, name, namespace, action)
            case SetClassName(class_name):
                await self._cluster.patch(*VS, name, {"spec": {"volumeSnapshotClassName": class_name}}, namespace)
            case CreateContent():
                try:
                    await self._cluster.create(_content(raw, action))
                except AlreadyExists:
                    pass
            case BindContent(content):
                await self._cluster.patch(*VSC, content, {"spec": {"volumeSnapshotRef": {"uid": meta["uid"]}}})
            case DeleteContent(content):
                try:
                    await self._cluster.delete(*VSC, content)
                except NotFound:
                    pass
            case SetStatus(status):
                await self._cluster.patch_status(*VS, name, {"status": status}, namespace)
            case ProtectClaim(add):
                change = SetFinalizers(add=(FINALIZER_PVC,)) if add else SetFinalizers(remove=(FINALIZER_PVC,))
                await _patch_finalizers(self._cluster, PVC, str(raw["spec"]["source"]["persistentVolumeClaimName"]),
                                        namespace, change)


def _in_flight(obj: Object, snapshot: SnapshotView) -> bool:
    """Whether `obj` is another snapshot of the same claim that is still being taken."""
    other = parse_snapshot(obj)
    return (other.uid != snapshot.uid and other.pvc_name == snapshot.pvc_name and not other.deleting
            and other.status.get("readyToUse") is not True)


def _restores(claim: Object, snapshot: str) -> bool:
    """Whether an unbound claim is to be restored from the snapshot."""
    parsed = parse_claim(claim)
    ref = parsed.data_source
    return (parsed.phase != "Bound" and not parsed.deleting and ref is not None and ref.kind == "VolumeSnapshot"
            and ref.name == snapshot and not ref.namespace)


async def _patch_finalizers(cluster: Cluster, kind: tuple[str, str], name: str, namespace: str | None,
                            change: SetFinalizers) -> None:
    """Make the change to the finalizers of the object as it is now (an earlier action of the same plan
    may have written it), only if nobody changes it in between (a merge patch replaces the list whole)."""
    fresh = await _get(cluster, kind, name, namespace)
    if fresh is None:
        return
    meta = fresh["metadata"]
    finalizers = change.applied_to(list(meta.get("finalizers") or ()))
    await cluster.patch(*kind, name, {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                                                   "finalizers": finalizers or None}}, namespace)


def _content(raw: Object, action: CreateContent) -> Object:
    meta = raw["metadata"]
    return {
        "apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent",
        "metadata": {"name": action.name},
        "spec": {
            "volumeSnapshotRef": {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "name": meta["name"],
                                  "namespace": meta["namespace"], "uid": meta["uid"]},
            "source": {"volumeHandle": action.volume_handle},
            "driver": action.driver,
            "deletionPolicy": action.deletion_policy,
            "volumeSnapshotClassName": action.class_name,
            "sourceVolumeMode": action.volume_mode,
        },
    }


class ContentReconciler:
    """Takes, adopts and frees the snapshot one VolumeSnapshotContent stands for (module docstring)."""

    def __init__(self, cluster: Cluster, pool: StoragePool, clock: Clock, events: EventOnce,
                 driver: str = CSI_DRIVER_NAME) -> None:
        self._cluster, self._pool, self._clock, self._events, self._driver = cluster, pool, clock, events, driver

    async def reconcile(self, key: Key) -> Result:
        raw = await _get(self._cluster, VSC, key.name)
        if raw is None:
            self._events.forget("VolumeSnapshotContent", key)
            return DONE
        plan = plan_content(await self.observe(raw))
        for action in plan.actions:
            await self._apply(raw, action)
        return Result(requeue_after=POLL_SECONDS) if plan.requeue else DONE

    async def observe(self, raw: Object) -> ContentObservation:
        content = parse_content(raw)
        now = self._clock.now()
        if content.driver != self._driver:
            return ContentObservation(content, self._driver, now)
        snapshot = await _get(self._cluster, VS, content.ref_name, content.ref_namespace) if content.ref_name else None
        uid = str((snapshot or {}).get("metadata", {}).get("uid") or "")
        bound = snapshot is not None and uid == content.ref_uid and not snapshot["metadata"].get("deletionTimestamp")
        volume, in_use = None, False
        if content.volume_handle and not (content.ready and content.snapshot_handle):
            raw_volume = await _get(self._cluster, PV, content.volume_handle)
            parsed = parse_volume(raw_volume) if raw_volume else None
            if parsed is not None and parsed.info is not None and self._pool.owns(parsed.info):
                volume, in_use = parsed.info, await self._in_use(parsed.claim_ref)
        found = None
        if content.handle:
            try:
                found = await self._pool.get_snapshot(content.handle)
            except VolumeError:
                found = None  # not a handle this driver makes
        return ContentObservation(content, self._driver, now, bound, snapshot is None or uid != content.ref_uid,
                                  volume, in_use, found)

    async def _in_use(self, ref: Any) -> bool:
        if ref is None:
            return False
        pods = (await self._cluster.list(*POD, ref.namespace)).items
        return any(ref.name in pod_claim_names(pod) and not pod_finished(pod) for pod in pods)

    async def _apply(self, raw: Object, action: SnapshotAction | ContentAction) -> None:
        name = raw["metadata"]["name"]
        match action:
            case Event(type_, reason, message):
                await self._events.record(raw, type_, reason, message)
            case SetFinalizers():
                await _patch_finalizers(self._cluster, VSC, name, None, action)
            case SetStatus(status):
                await self._cluster.patch_status(*VSC, name, {"status": status})
            case TakeSnapshot(volume, handle, in_use):
                try:
                    taken = await self._pool.snapshot_volume(volume, handle, in_use=in_use)
                except VolumeError as e:
                    await self._failed(raw, f"Failed to create snapshot: {e}")
                    if e.retryable:
                        raise
                    return
                await self._cluster.patch_status(*VSC, name, {"status": content_status(taken)})
            case DeleteSnapshotData(handle):
                try:
                    await self._pool.delete_snapshot(handle)
                except VolumeError as e:
                    await self._events.record(raw, "Warning", "SnapshotDeleteError", f"Failed to delete snapshot: {e}")
                    raise
            case DeleteContent(content):
                try:
                    await self._cluster.delete(*VSC, content)
                except NotFound:
                    pass

    async def _failed(self, raw: Object, message: str) -> None:
        await self._events.record(raw, "Warning", "SnapshotCreationFailed", message)
        stamp = self._clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._cluster.patch_status(*VSC, raw["metadata"]["name"],
                                         {"status": {"readyToUse": False, "error": {"message": message,
                                                                                    "time": stamp}}})


def snapshots_of_content(obj: Object) -> list[Key]:
    ref = (obj.get("spec") or {}).get("volumeSnapshotRef") or {}
    return [Key(str(ref["namespace"]), str(ref["name"]))] if ref.get("name") and ref.get("namespace") else []


def contents_of_snapshot(obj: Object) -> list[Key]:
    snapshot = parse_snapshot(obj)
    names = {snapshot.content_name, snapshot.bound_content, content_name_for(snapshot) if snapshot.uid else None}
    return [Key("", name) for name in sorted(n for n in names if n)]


def controllers(cluster: Cluster, pool: StoragePool, clock: Clock) -> list[ControllerSpec]:
    """The snapshot (VolumeSnapshot) and content (VolumeSnapshotContent) controllers of this driver."""
    snapshots = SnapshotReconciler(cluster, clock, EventOnce(cluster, clock.now, component="snapshot-controller"))
    contents = ContentReconciler(cluster, pool, clock,
                                 EventOnce(cluster, clock.now, component=f"csi-snapshotter {CSI_DRIVER_NAME}"))
    return [
        ControllerSpec(name="local-snapshot-controller", api_version=VS[0], kind=VS[1], reconciler=snapshots,
                       watches=(Watch(*VSC, map_to_keys=snapshots_of_content),)),
        ControllerSpec(name="local-snapshot-content-controller", api_version=VSC[0], kind=VSC[1], reconciler=contents,
                       watches=(Watch(*VS, map_to_keys=contents_of_snapshot),)),
    ]
