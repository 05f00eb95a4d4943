"""The provisioner's decisions for a claim, as tables of observed state → planned actions (no I/O)."""

from __future__ import annotations

from typing import Any

from cdi.api.core import VolumeMode
from cdi.embedded.volumes.claim_plan import (
    AnnotateProvisioner,
    BindClaim,
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
from cdi.embedded.volumes.objects import ReclaimPolicy, parse_claim, parse_storage_class, parse_volume
from tests.volumes.support import MIB, pvc, static_pv, storage_class

UID = "1234-abcd"
LOCAL = storage_class("local", default=True)
WFFC = storage_class("local-wffc", binding="WaitForFirstConsumer")


def claim(*, uid: str = UID, phase: str = "", **kwargs: Any) -> dict[str, Any]:
    obj = pvc("data", **kwargs)
    obj["metadata"]["uid"] = uid
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def observe(claim_obj: dict[str, Any], classes: tuple[dict[str, Any], ...] = (LOCAL, WFFC),
            volumes: tuple[dict[str, Any], ...] = ()) -> ClaimObservation:
    return ClaimObservation(parse_claim(claim_obj), tuple(parse_storage_class(obj) for obj in classes),
                            tuple(parse_volume(obj) for obj in volumes))


def bound_pv(name: str = f"pvc-{UID}", *, uid: str = UID, phase: str = "Bound", **kwargs: Any) -> dict[str, Any]:
    obj = static_pv(name, "/pool/mounts/x", **kwargs)
    obj["spec"]["claimRef"] = {"namespace": "default", "name": "data", "uid": uid}
    obj["status"] = {"phase": phase}
    obj["metadata"]["resourceVersion"] = "7"
    return obj


def test_an_immediate_claim_is_provisioned_and_bound_rounding_up_to_whole_mebibytes() -> None:
    plan = plan_claim(observe(claim(size="10000000")))
    assert plan.storage_class == "local"
    assert plan.actions == (
        MarkPending(), AnnotateProvisioner("pycdi.local/hostpath"),
        Provision(f"pvc-{UID}", 10 * MIB, VolumeMode.FILESYSTEM, ("ReadWriteOnce",), "local", ReclaimPolicy.DELETE,
                  None),
        Notify("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume pvc-{UID}"),
        MarkVolumeBound(f"pvc-{UID}"), BindClaim(f"pvc-{UID}", by_controller=True),
        SetClaimBound("10Mi", ("ReadWriteOnce",)),
    )


def test_block_mode_and_fs_type_come_from_the_claim_and_class() -> None:
    xfs = storage_class("fast", parameters={"fsType": "xfs"})
    plan = plan_claim(observe(claim(storage_class="fast", volume_mode="Block", size="1Gi"), classes=(xfs,)))
    provision = next(action for action in plan.actions if isinstance(action, Provision))
    assert (provision.volume_mode, provision.size_bytes, provision.fs_type) == (VolumeMode.BLOCK, 1024 * MIB, "xfs")


def test_wait_for_first_consumer_waits_for_the_selected_node() -> None:
    waiting = plan_claim(observe(claim(storage_class="local-wffc")))
    assert waiting.actions == (
        MarkPending(), Notify("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"))
    selected = plan_claim(observe(claim(storage_class="local-wffc",
                                        annotations={"volume.kubernetes.io/selected-node": "pycdi-node"})))
    assert any(isinstance(action, Provision) for action in selected.actions)


def test_a_claim_without_a_class_gets_the_newest_default() -> None:
    older = storage_class("older", default=True)
    older["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    newer = storage_class("newer", default=True)
    newer["metadata"]["creationTimestamp"] = "2024-02-01T00:00:00Z"
    plan = plan_claim(observe(claim(storage_class=None), classes=(newer, older)))
    assert plan.actions[0] == SetStorageClass("newer")
    assert plan.storage_class == "newer"


def test_claims_the_provisioner_cannot_serve_stay_pending_and_say_why() -> None:
    cases = {
        "missing": ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "missing" not found'),
        "other": ("Normal", "ExternalProvisioning", "Waiting for a volume to be created either by the external "
                  "provisioner 'ebs.csi.aws.com' or manually by the system administrator. If volume creation is "
                  "delayed, please verify that the provisioner is running and correctly registered."),
        "": ("Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set"),
    }
    other = storage_class("other", provisioner="ebs.csi.aws.com")
    for class_name, (type_, reason, message) in cases.items():
        plan = plan_claim(observe(claim(storage_class=class_name), classes=(LOCAL, other)))
        assert plan.actions == (MarkPending(), Notify(type_, reason, message)), class_name
    no_size = plan_claim(observe(claim(size="lots")))
    assert no_size.actions[-1] == Notify("Warning", "ProvisioningFailed",
                                        "spec.resources.requests.storage must be a positive quantity, not 'lots'")


def test_populated_claims_are_left_to_their_populator_and_copies_wait_for_their_source() -> None:
    populated = claim(dataSourceRef={"apiGroup": "cdi.kubevirt.io", "kind": "VolumeImportSource", "name": "s"})
    assert plan_claim(observe(populated)).actions == (MarkPending(),)
    clone = claim(dataSource={"kind": "PersistentVolumeClaim", "name": "src"})
    plan = plan_claim(observe(clone))
    assert plan.waits_for_source
    assert plan.actions[-1] == Notify("Warning", "ProvisioningFailed",
                                      'failed to provision volume with StorageClass "local": error getting handle for '
                                      'DataSource Type PersistentVolumeClaim by Name src: error getting PVC src '
                                      '(namespace "default") from api server: persistentvolumeclaims "src" not found')


def test_a_bound_claim_needs_nothing() -> None:
    done = claim(phase="Bound", volume_name=f"pvc-{UID}",
                 annotations={"pv.kubernetes.io/bind-completed": "yes"})
    done["status"].update(capacity={"storage": "32Mi"}, accessModes=["ReadWriteOnce"])
    assert plan_claim(observe(done, volumes=(bound_pv(),))).actions == ()


def test_a_crash_after_creating_the_volume_object_resumes_binding() -> None:
    plan = plan_claim(observe(claim(phase="Pending"), volumes=(bound_pv(phase=""),)))
    assert plan.actions == (MarkVolumeBound(f"pvc-{UID}"), BindClaim(f"pvc-{UID}", by_controller=True),
                            SetClaimBound("32Mi", ("ReadWriteOnce",)))


def test_static_binding_by_volume_name() -> None:
    available = static_pv("manual-1", "/srv/disk", storage_class="manual")
    available["metadata"]["resourceVersion"] = "3"
    plan = plan_claim(observe(claim(storage_class="manual", volume_name="manual-1", phase="Pending"),
                              volumes=(available,)))
    assert plan.actions == (ReserveVolume("manual-1", "3"), MarkVolumeBound("manual-1"),
                            BindClaim("manual-1", by_controller=False), SetClaimBound("32Mi", ("ReadWriteOnce",)))


def test_static_binding_refuses_volumes_that_do_not_fit() -> None:
    cases = {
        "requested PV is too small": claim(storage_class="manual", volume_name="m", size="64Mi"),
        "storageClassName does not match": claim(storage_class="local", volume_name="m"),
        "incompatible volumeMode": claim(storage_class="manual", volume_name="m", volume_mode="Block"),
        "incompatible accessMode": claim(storage_class="manual", volume_name="m", access_modes=("ReadWriteMany",)),
    }
    for problem, wanted in cases.items():
        plan = plan_claim(observe(wanted, volumes=(static_pv("m", "/srv/m"),)))
        assert plan.actions[-1] == Notify("Warning", "VolumeMismatch", f'Cannot bind to requested volume "m": {problem}')
    taken = plan_claim(observe(claim(volume_name="t"), volumes=(bound_pv("t", uid="someone-else"),)))
    assert taken.actions[-1] == Notify("Warning", "FailedBinding", 'volume "t" already bound to a different claim.')


def test_an_unbound_claim_takes_the_smallest_available_volume_that_fits() -> None:
    volumes = (static_pv("big", "/b", "1Gi"), static_pv("small", "/s", "20Mi"), static_pv("tiny", "/t", "1Mi"))
    plan = plan_claim(observe(claim(storage_class="manual", phase="Pending"), volumes=volumes))
    assert plan.actions[0] == ReserveVolume("small", "")


def test_a_bound_claim_whose_volume_vanished_is_lost() -> None:
    plan = plan_claim(observe(claim(phase="Bound", volume_name="gone")))
    assert plan.actions == (MarkLost(), Notify("Warning", "ClaimLost",
                                               "Bound claim has lost its PersistentVolume. Data on the volume is lost!"))
    assert plan_claim(observe(claim(phase="Lost", volume_name="gone"))).actions == ()
