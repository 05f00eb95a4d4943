"""The embedded mode's local volume provisioner: `ClaimReconciler` and the controllers `cdi serve` runs.

`ClaimReconciler` is keyed by PersistentVolumeClaim. Each time it reads the claim, every StorageClass
and every PersistentVolume, lets `cdi.embedded.volumes.claim_plan.plan_claim` decide, and applies the
plan: provisioning creates the volume in the `StoragePool` and then its PV (`render_volume`), both
named `pvc-<claim uid>`, so a crash between the two is repaired by creating the same volume again,
which the pool hands back instead of making a second one. A claim with a PVC or VolumeSnapshot data
source gets a copy of it (`StoragePool.create_volume_from`; reflink where the pool has it), and is
looked at again every few seconds while its source is not ready. Expanding a bound claim's volume grows it
in the pool, then its PV's capacity, then its filesystem, then the claim's capacity
(`cdi.embedded.volumes.expansion`). Pool errors become a `ProvisioningFailed` (or, while expanding,
`VolumeResizeFailed`) Warning on the claim; retryable ones are raised again so the runtime backs off.

`controllers(cluster, pool, clock)` wires it and its neighbour `VolumeReconciler`
(`cdi.embedded.volumes.reclaimer`) into `ControllerSpec`s for `cdi.runtime`'s manager.
"""

from __future__ import annotations

from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.volumes.claim_plan import (
    BOUND,
    LOST,
    PENDING,
    AnnotateProvisioner,
    BindClaim,
    ClaimAction,
    ClaimObservation,
    MarkLost,
    MarkPending,
    MarkVolumeBound,
    Notify,
    Provision,
    ReserveVolume,
    SetClaimBound,
    SetStorageClass,
    plan_claim,
)
from cdi.embedded.volumes.errors import SnapshotMissing, VolumeConflict, VolumeError
from cdi.embedded.volumes.expansion import ExpandFilesystem, ExpandVolume, FinishResize, SetResizeCondition
from cdi.embedded.volumes.manifests import (
    bind_claim_patch,
    claim_bound_status,
    phase_status,
    provisioner_patch,
    render_volume,
    reserve_patch,
    resize_condition_status,
    resized_status,
    volume_capacity_patch,
)
from cdi.embedded.volumes.objects import (
    ClaimView,
    parse_claim,
    parse_storage_class,
    parse_volume,
    pod_claim_names,
    pod_finished,
)
from cdi.embedded.volumes.pool import StoragePool, VolumeInfo
from cdi.embedded.volumes.reclaimer import VolumeReconciler, volumes_of_claim
from cdi.embedded.volumes.sources import observe_source
from cdi.embedded.volumes.tracking import EventOnce, PendingClaims
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

PVC = ("v1", "PersistentVolumeClaim")
PV = ("v1", "PersistentVolume")
POD = ("v1", "Pod")
STORAGE_CLASS = ("storage.k8s.io/v1", "StorageClass")
SOURCE_POLL_SECONDS = 2.0  # while a claim's PVC or snapshot source is not ready


class ClaimReconciler:
    """Provisions and binds one PersistentVolumeClaim (see the module docstring)."""

    def __init__(self, cluster: Cluster, pool: StoragePool, clock: Clock, *, pending: PendingClaims | None = None,
                 events: EventOnce | None = None) -> None:
        self._cluster = cluster
        self._pool = pool
        self._clock = clock
        self.pending = pending or PendingClaims()
        self._events = events or EventOnce(cluster, clock.now)

    async def reconcile(self, key: Key) -> Result:
        try:
            raw = await self._cluster.get(*PVC, key.name, key.namespace)
        except NotFound:
            self.pending.forget(key)
            self._events.forget("PersistentVolumeClaim", key)
            return DONE
        observed = await self.observe(raw)
        plan = plan_claim(observed)
        self.pending.note(key, plan.storage_class, pending=observed.claim.phase != BOUND and not plan.binds)
        for action in plan.actions:
            try:
                await self._apply(raw, observed.claim, action)
            except VolumeError as e:
                if isinstance(action, ExpandVolume | ExpandFilesystem):
                    await self._events.record(raw, "Warning", "VolumeResizeFailed",
                                              f"resizing volume {action.info.name} failed: {e}")
                else:
                    await self._events.record(raw, "Warning", "ProvisioningFailed",
                                              f'failed to provision volume with StorageClass "{plan.storage_class}": '
                                              f"{e}")
                if e.retryable:
                    raise
                break
        return Result(requeue_after=SOURCE_POLL_SECONDS) if plan.waits_for_source else DONE

    async def observe(self, raw: Object) -> ClaimObservation:
        classes = (await self._cluster.list(*STORAGE_CLASS)).items
        volumes = (await self._cluster.list(*PV)).items
        claim = parse_claim(raw)
        in_use = False
        if claim.phase == BOUND:  # only an expansion asks whether a pod uses the volume
            pods = (await self._cluster.list(*POD, claim.namespace)).items
            in_use = any(claim.name in pod_claim_names(pod) and not pod_finished(pod) for pod in pods)
        source = await observe_source(self._cluster, self._pool, claim) if claim.phase != BOUND else None
        return ClaimObservation(claim, tuple(parse_storage_class(obj) for obj in classes),
                                tuple(parse_volume(obj) for obj in volumes), in_use, source)

    async def provision_volume(self, plan: Provision) -> VolumeInfo:
        """Step one of provisioning: the volume in the pool (returned as is if it already exists), empty
        or a copy of the plan's source."""
        source = plan.source
        if source is None:
            return await self._pool.create_volume(plan.volume_name, plan.size_bytes, plan.volume_mode,
                                                  fs_type=plan.fs_type)
        if source.volume is not None:
            return await self._pool.create_volume_from(plan.volume_name, plan.size_bytes, source.volume,
                                                       in_use=source.in_use)
        snapshot = await self._pool.get_snapshot(source.snapshot_handle or "")
        if snapshot is None:
            raise SnapshotMissing(f"snapshot {source.snapshot_handle} is not in this node's storage pool")
        if snapshot.volume_mode != plan.volume_mode:  # a pre-provisioned content may not say its mode
            raise VolumeConflict(f"snapshot {snapshot.handle} is of a {snapshot.volume_mode.value} volume; it cannot "
                                 f"be restored into a {plan.volume_mode.value} volume")
        return await self._pool.create_volume_from(plan.volume_name, plan.size_bytes, snapshot)

    async def create_persistent_volume(self, claim: ClaimView, plan: Provision, info: VolumeInfo) -> None:
        """Step two: the PV recording where the volume is, already claimed by `claim`."""
        try:
            await self._cluster.create(render_volume(claim, plan, info))
        except AlreadyExists:
            pass  # created by an earlier attempt that did not get to bind

    async def _apply(self, raw: Object, claim: ClaimView, action: ClaimAction) -> None:
        name, namespace = claim.name, claim.namespace
        match action:
            case SetStorageClass(class_name):
                await self._cluster.patch(*PVC, name, {"spec": {"storageClassName": class_name}}, namespace)
            case MarkPending():
                await self._cluster.patch_status(*PVC, name, phase_status(PENDING), namespace)
            case AnnotateProvisioner(provisioner):
                await self._cluster.patch(*PVC, name, provisioner_patch(provisioner), namespace)
            case Provision():
                await self.create_persistent_volume(claim, action, await self.provision_volume(action))
            case ReserveVolume(volume_name, resource_version):
                await self._cluster.patch(*PV, volume_name, reserve_patch(claim, resource_version))
            case MarkVolumeBound(volume_name):
                await self._cluster.patch_status(*PV, volume_name, phase_status(BOUND))
            case BindClaim(volume_name, by_controller):
                await self._cluster.patch(*PVC, name, bind_claim_patch(volume_name, by_controller=by_controller),
                                          namespace)
            case SetClaimBound(capacity, access_modes):
                await self._cluster.patch_status(*PVC, name, claim_bound_status(capacity, access_modes), namespace)
            case MarkLost():
                await self._cluster.patch_status(*PVC, name, phase_status(LOST), namespace)
            case Notify(type_, reason, message):
                await self._events.record(raw, type_, reason, message)
            case SetResizeCondition(type_, message):
                await self._cluster.patch_status(*PVC, name, resize_condition_status(raw, type_, message,
                                                                                     self._clock.now()), namespace)
            case ExpandVolume(info, size_bytes):
                await self._pool.expand_volume(info, size_bytes)
                await self._cluster.patch(*PV, info.name, volume_capacity_patch(size_bytes))
            case ExpandFilesystem(info, in_use):
                await self._pool.expand_filesystem(info, in_use=in_use)
            case FinishResize(capacity, access_modes):
                await self._cluster.patch_status(*PVC, name, resized_status(raw, capacity, access_modes), namespace)


def claims_of_pod(obj: Object) -> list[Key]:
    """A pod's claims: a filesystem that may grow only unmounted waits for the pods using it to finish."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    return [Key(namespace, name) for name in pod_claim_names(obj)]


def controllers(cluster: Cluster, pool: StoragePool, clock: Clock) -> list[ControllerSpec]:
    """The provisioner (keyed by claim) and the reclaimer (keyed by volume), sharing their bookkeeping."""
    pending = PendingClaims()
    events = EventOnce(cluster, clock.now)
    claims = ClaimReconciler(cluster, pool, clock, pending=pending, events=events)
    volumes = VolumeReconciler(cluster, pool, events)
    return [
        ControllerSpec(name="local-volume-provisioner", api_version=PVC[0], kind=PVC[1], reconciler=claims,
                       watches=(Watch(*STORAGE_CLASS, map_to_keys=pending.for_storage_class),
                                Watch(*PV, map_to_keys=pending.for_volume),
                                Watch(*POD, map_to_keys=claims_of_pod))),
        ControllerSpec(name="local-volume-reclaimer", api_version=PV[0], kind=PV[1], reconciler=volumes,
                       watches=(Watch(*PVC, map_to_keys=volumes_of_claim),)),
    ]
