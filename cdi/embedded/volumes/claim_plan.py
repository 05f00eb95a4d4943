"""What to do for one PersistentVolumeClaim: the provisioner's pure planner.

`plan_claim` turns a `ClaimObservation` (the claim, every StorageClass, every PersistentVolume) into
the ordered actions `cdi.embedded.volumes.provisioner` applies. It follows Kubernetes' PV controller
and external-provisioner: a claim without a class gets the default class (the newest, if several);
a claim naming a volume binds to it if it fits; otherwise an Available volume that fits binds
(smallest first); otherwise a class served by this provisioner (`OUR_PROVISIONERS`: its CSI driver
name, or its earlier name) provisions a new volume, at once
for Immediate classes and once the scheduler has set `volume.kubernetes.io/selected-node` for
WaitForFirstConsumer classes. Binding is PV claimRef → PV phase Bound → claim `spec.volumeName` and
bind annotations → claim status Bound, and every step is planned only when it is not done yet, so a
plan from the state a crash left behind picks up where it stopped. Why a claim waits is said in an
Event. A claim whose data source is a PVC or VolumeSnapshot is provisioned as a copy of it, once
`cdi.embedded.volumes.source_plan` allows (the plan then asks to be run again while the source is not
ready). Claims filled by a volume populator (a `dataSourceRef` to another kind) are left to it. Once a
claim is bound, a request grown past its volume's capacity is expanded as
`cdi.embedded.volumes.expansion` plans.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.api.core import AccessMode, VolumeMode
from cdi.embedded.volumes.expansion import ExpansionAction, ResizeEvent, plan_expansion
from cdi.embedded.volumes.keys import OUR_PROVISIONERS
from cdi.embedded.volumes.objects import (
    BindingMode,
    ClaimView,
    ReclaimPolicy,
    StorageClassView,
    VolumeView,
)
from cdi.embedded.volumes.pool import round_up_to_mib
from cdi.embedded.volumes.source_plan import CopyFrom, CopySource, Refuse, plan_copy
from cdi.quantity import format_quantity

BOUND, PENDING, LOST, AVAILABLE = "Bound", "Pending", "Lost", "Available"


@dataclass(frozen=True)
class SetStorageClass:
    class_name: str  # the default class, for a claim that names none


@dataclass(frozen=True)
class MarkPending:
    pass


@dataclass(frozen=True)
class AnnotateProvisioner:
    provisioner: str  # volume.kubernetes.io/storage-provisioner (and the beta key) on the claim


@dataclass(frozen=True)
class Provision:
    volume_name: str
    size_bytes: int
    volume_mode: VolumeMode
    access_modes: tuple[str, ...]
    storage_class_name: str
    reclaim_policy: ReclaimPolicy
    fs_type: str | None
    source: CopyFrom | None = None  # provision as a copy of a volume or snapshot


@dataclass(frozen=True)
class ReserveVolume:
    volume_name: str
    resource_version: str  # precondition: another claim must not take it in between


@dataclass(frozen=True)
class MarkVolumeBound:
    volume_name: str


@dataclass(frozen=True)
class BindClaim:
    volume_name: str
    by_controller: bool  # the controller chose the volume (not the claim's author)


@dataclass(frozen=True)
class SetClaimBound:
    capacity: str
    access_modes: tuple[str, ...]


@dataclass(frozen=True)
class MarkLost:
    pass


@dataclass(frozen=True)
class Notify:
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class WaitForSource:
    pass  # internal to the planner: becomes ClaimPlan.waits_for_source


ClaimAction = (SetStorageClass | MarkPending | AnnotateProvisioner | Provision | ReserveVolume | MarkVolumeBound
               | BindClaim | SetClaimBound | MarkLost | Notify | ExpansionAction)


@dataclass(frozen=True)
class ClaimObservation:
    claim: ClaimView
    classes: tuple[StorageClassView, ...] = ()
    volumes: tuple[VolumeView, ...] = ()
    in_use: bool = False  # a pod that has not finished mounts the claim
    source: CopySource | None = None  # the PVC or VolumeSnapshot the claim's data source names


@dataclass(frozen=True)
class ClaimPlan:
    storage_class: str | None  # the class the claim is (or will be) of; None while it has none
    actions: tuple[ClaimAction, ...]
    waits_for_source: bool = False  # its data source is not ready yet: plan again in a moment

    @property
    def binds(self) -> bool:
        return any(isinstance(action, SetClaimBound) for action in self.actions)


def volume_name_for(claim: ClaimView) -> str:
    """The name of the volume provisioned for a claim, as external-provisioner names it."""
    return f"pvc-{claim.uid}"


def default_class(classes: tuple[StorageClassView, ...]) -> StorageClassView | None:
    """The default StorageClass; the newest when several claim to be (Kubernetes' rule)."""
    defaults = sorted((cls for cls in classes if cls.is_default), key=lambda cls: (cls.created, cls.name))
    return defaults[-1] if defaults else None


def plan_claim(observed: ClaimObservation) -> ClaimPlan:
    claim = observed.claim
    if claim.deleting or claim.phase == LOST:
        return ClaimPlan(claim.storage_class_name, ())
    head: list[ClaimAction] = []
    class_name = claim.storage_class_name
    if class_name is None and (default := default_class(observed.classes)) is not None:
        head.append(SetStorageClass(default.name))
        class_name = default.name
    if claim.phase == "":
        head.append(MarkPending())  # what the API server defaults a new claim's phase to
    actions = _bind_or_provision(observed, claim, class_name or "")
    waits = any(isinstance(action, WaitForSource) for action in actions)
    return ClaimPlan(class_name, (*head, *(a for a in actions if not isinstance(a, WaitForSource))), waits)


def _bind_or_provision(observed: ClaimObservation, claim: ClaimView, class_name: str
                       ) -> tuple[ClaimAction | WaitForSource, ...]:
    if claim.volume_name:
        return _bind_requested(observed, claim, class_name)
    mine = [volume for volume in observed.volumes
            if claim.is_claimed_by(volume.claim_ref) and volume.claim_ref and volume.claim_ref.uid == claim.uid]
    if mine:
        return _complete_binding(observed, claim, mine[0])
    storage_class = next((cls for cls in observed.classes if cls.name == class_name), None)
    if storage_class is not None and storage_class.binding_mode == BindingMode.WAIT_FOR_FIRST_CONSUMER \
            and not claim.selected_node:
        return (Notify("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"),)
    match = best_match(claim, class_name, observed.volumes)
    if match is not None:
        return (ReserveVolume(match.name, match.resource_version), *_complete_binding(observed, claim, match))
    return _provision(claim, class_name, storage_class, observed.source)


def _bind_requested(observed: ClaimObservation, claim: ClaimView, class_name: str) -> tuple[ClaimAction, ...]:
    volume = next((volume for volume in observed.volumes if volume.name == claim.volume_name), None)
    if volume is None:
        if claim.phase == BOUND:
            return (MarkLost(), Notify("Warning", "ClaimLost",
                                       "Bound claim has lost its PersistentVolume. Data on the volume is lost!"))
        return (Notify("Warning", "FailedBinding", f'volume "{claim.volume_name}" requested by this claim '
                                                   f"does not exist"),)
    if claim.is_claimed_by(volume.claim_ref):
        assert volume.claim_ref is not None
        reserve = (ReserveVolume(volume.name, volume.resource_version),) if not volume.claim_ref.uid else ()
        return (*reserve, *_complete_binding(observed, claim, volume))
    if volume.claim_ref is not None:
        if claim.phase == BOUND:
            return (MarkLost(), Notify("Warning", "ClaimMisbound",
                                       "Two claims are bound to the same volume, this one is bound incorrectly"))
        return (Notify("Warning", "FailedBinding", f'volume "{volume.name}" already bound to a different claim.'),)
    problem = mismatch(claim, class_name, volume)
    if problem:
        return (Notify("Warning", "VolumeMismatch", f'Cannot bind to requested volume "{volume.name}": {problem}'),)
    return (ReserveVolume(volume.name, volume.resource_version), *_complete_binding(observed, claim, volume))


def _complete_binding(observed: ClaimObservation, claim: ClaimView, volume: VolumeView) -> tuple[ClaimAction, ...]:
    actions: list[ClaimAction] = []
    if volume.phase != BOUND:
        actions.append(MarkVolumeBound(volume.name))
    if claim.volume_name != volume.name or not claim.bind_completed:
        actions.append(BindClaim(volume.name, by_controller=claim.volume_name != volume.name))
    if not actions and claim.phase == BOUND:
        storage_class = next((cls for cls in observed.classes if cls.name == volume.storage_class_name), None)
        expansion = plan_expansion(claim, volume, storage_class, in_use=observed.in_use)
        planned = [Notify(a.type, a.reason, a.message) if isinstance(a, ResizeEvent) else a for a in expansion or ()]
        if any(not isinstance(action, Notify) for action in planned):
            return tuple(planned)
        actions.extend(planned)  # only a Warning: the claim's status is kept as it is for any bound claim
    if (claim.phase != BOUND or claim.status_capacity != volume.capacity
            or claim.status_access_modes != volume.access_modes):
        actions.append(SetClaimBound(volume.capacity, volume.access_modes))
    return tuple(actions)


def mismatch(claim: ClaimView, class_name: str, volume: VolumeView) -> str | None:
    """Why `volume` cannot serve `claim` (Kubernetes' wording), or None when it can."""
    if volume.deleting or volume.phase not in ("", AVAILABLE):
        return f"the volume is {'being deleted' if volume.deleting else volume.phase}"
    if claim.request_bytes is None or volume.capacity_bytes < claim.request_bytes:
        return "requested PV is too small"
    if volume.storage_class_name != class_name:
        return "storageClassName does not match"
    if volume.volume_mode != claim.volume_mode:
        return "incompatible volumeMode"
    if not set(claim.access_modes) <= set(volume.access_modes):
        return "incompatible accessMode"
    return None


def best_match(claim: ClaimView, class_name: str, volumes: tuple[VolumeView, ...]) -> VolumeView | None:
    """The Available volume to bind an unbound claim to: one pre-bound to it by name first, then the
    smallest that fits."""
    fitting = [volume for volume in volumes if (volume.claim_ref is None or claim.is_claimed_by(volume.claim_ref))
               and mismatch(claim, class_name, volume) is None]
    fitting.sort(key=lambda volume: (volume.claim_ref is None, volume.capacity_bytes, volume.name))
    return fitting[0] if fitting else None


def _provision(claim: ClaimView, class_name: str, storage_class: StorageClassView | None,
               source: CopySource | None) -> tuple[ClaimAction | WaitForSource, ...]:
    if not class_name:
        return (Notify("Normal", "FailedBinding",
                       "no persistent volumes available for this claim and no storage class is set"),)
    if storage_class is None:
        return (Notify("Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{class_name}" not found'),)
    if storage_class.provisioner not in OUR_PROVISIONERS:
        return (Notify("Normal", "ExternalProvisioning",
                       f"Waiting for a volume to be created either by the external provisioner "
                       f"'{storage_class.provisioner}' or manually by the system administrator. If volume creation "
                       f"is delayed, please verify that the provisioner is running and correctly registered."),)
    if claim.data_source is not None and not claim.data_source.copies:
        return ()  # a volume populator owns this claim
    if not claim.request_bytes or claim.request_bytes < 0:
        return (Notify("Warning", "ProvisioningFailed",
                       f"spec.resources.requests.storage must be a positive quantity, not {claim.request_text!r}"),)
    name, size = volume_name_for(claim), round_up_to_mib(claim.request_bytes)
    copy = None
    if claim.data_source is not None:
        decided = plan_copy(claim.name, claim.namespace, storage_class.name, size, claim.volume_mode,
                            source or CopySource(claim.data_source), OUR_PROVISIONERS)
        if isinstance(decided, Refuse):
            return (AnnotateProvisioner(storage_class.provisioner), Notify("Warning", decided.reason,
                    f'failed to provision volume with StorageClass "{storage_class.name}": {decided.message}'),
                    *((WaitForSource(),) if decided.waiting else ()))
        copy = decided
    access_modes = claim.access_modes or (AccessMode.READ_WRITE_ONCE.value,)
    return (AnnotateProvisioner(storage_class.provisioner),
            Provision(name, size, claim.volume_mode, access_modes, storage_class.name, storage_class.reclaim_policy,
                      storage_class.fs_type, copy),
            Notify("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}"),
            MarkVolumeBound(name), BindClaim(name, by_controller=True),
            SetClaimBound(format_quantity(size), access_modes))
