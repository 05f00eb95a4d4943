"""The operator's planner (`cdi.operator.plan`) as tables: observed state in, status and ordered actions out.

Strings are upstream's, written out literally here (controller-lifecycle-operator-sdk's reasons and
messages, the CDI operator's "unwanted" message, the cdi-validate webhook's refusal), so a change to the
contract module that drifts from upstream fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdi.operator import plan as p
from cdi.operator.versions import is_downgrade

NOW = "2026-12-02T06:00:00Z"
LATER = "2026-12-02T06:05:00Z"
V = "v1.2.0"


def cr(status: dict[str, Any] | None = None, *, deleting: bool = False, finalizer: bool = True,
       spec: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cdi", "uid": "u-1"}
    if finalizer:
        meta["finalizers"] = ["operator.cdi.kubevirt.io"]
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": meta, "spec": spec or {},
            "status": status or {}}


def observed(doc: dict[str, Any], standing: p.Standing = p.Standing.ACTIVE, **kw: Any) -> p.Observed:
    return p.Observed(cr=doc, standing=standing, version=kw.pop("version", V), now=kw.pop("now", LATER), **kw)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
    return {c["type"]: (c["status"], c.get("reason"), c.get("message")) for c in status["conditions"]}


def status_of(plan: p.Plan) -> dict[str, Any]:
    written = [a for a in plan.actions if isinstance(a, p.WriteStatus | p.RemoveFinalizer)]
    assert written, plan
    return written[-1].status


def kinds(plan: p.Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def deploying() -> dict[str, Any]:
    return status_of(p.plan(observed(cr(finalizer=False), p.Standing.FREE)))


def deployed() -> dict[str, Any]:
    return status_of(p.plan(observed(cr(deploying()), components={"cdi-deployment": True})))


def test_a_new_cr_claims_the_config_map_and_starts_deploying() -> None:
    plan = p.plan(observed(cr(finalizer=False), p.Standing.FREE, now=NOW))
    assert kinds(plan) == ["ClaimConfigMap", "AddFinalizer", "WriteStatus", "RecordEvent"]
    status = status_of(plan)
    assert status["phase"] == "Deploying"
    assert (status["operatorVersion"], status["targetVersion"]) == (V, V)
    assert "observedVersion" not in status
    assert conditions(status) == {"Available": ("False", None, None),
                                  "Progressing": ("True", "DeployStarted", "Started Deployment"),
                                  "Degraded": ("False", None, None)}
    assert plan.actions[-1] == p.RecordEvent("Normal", "DeployStarted", "Started Deployment")
    assert plan.requeue_after == 0.0


def test_deploying_installs_and_waits_for_the_deployments() -> None:
    plan = p.plan(observed(cr(deploying()), components={"cdi-deployment": False, "cdi-apiserver": True}))
    assert kinds(plan) == ["Install"]  # nothing in the status changes while it waits
    assert plan.requeue_after is not None


def test_every_deployment_ready_is_deployed_at_the_operator_version() -> None:
    plan = p.plan(observed(cr(deploying()), components={"cdi-deployment": True, "cdi-apiserver": True}))
    assert kinds(plan) == ["Install", "RecordEvent", "WriteStatus"]
    status = status_of(plan)
    assert (status["phase"], status["observedVersion"]) == ("Deployed", V)
    assert conditions(status) == {"Available": ("True", "DeployCompleted", "Deployment Completed"),
                                  "Progressing": ("False", None, None), "Degraded": ("False", None, None)}
    assert p.RecordEvent("Normal", "DeployCompleted", "Deployment Completed") in plan.actions


def test_a_settled_installation_writes_nothing() -> None:
    done = deployed()
    assert kinds(p.plan(observed(cr(done), components={"cdi-deployment": True}))) == ["Install"]


def test_no_components_observed_is_not_ready() -> None:
    assert "WriteStatus" not in kinds(p.plan(observed(cr(deploying()))))


def test_a_deployed_installation_that_loses_a_deployment_is_degraded_and_stays_deployed() -> None:
    plan = p.plan(observed(cr(deployed()), components={"cdi-deployment": True, "cdi-uploadproxy": False}))
    status = status_of(plan)
    assert status["phase"] == "Deployed"
    assert conditions(status)["Degraded"] == ("True", "ComponentsNotReady", "Not ready: cdi-uploadproxy")
    assert conditions(status)["Available"][0] == "True"


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    status = deploying()
    first = {c["type"]: c for c in status["conditions"]}
    plan = p.plan(observed(cr(status), components={"x": True}, now="2026-12-02T07:00:00Z"))
    after = {c["type"]: c for c in status_of(plan)["conditions"]}
    assert after["Degraded"]["lastTransitionTime"] == first["Degraded"]["lastTransitionTime"]
    assert after["Available"]["lastTransitionTime"] == "2026-12-02T07:00:00Z"


@pytest.mark.parametrize("standing", [p.Standing.UNWANTED])
def test_a_second_cr_goes_to_error_with_upstreams_message(standing: p.Standing) -> None:
    plan = p.plan(observed(cr(finalizer=False), standing))
    status = status_of(plan)
    assert status["phase"] == "Error"
    assert conditions(status) == {
        "Available": ("False", None, None), "Progressing": ("False", None, None),
        "Degraded": ("True", "ConfigError", "Reconciling to error state, unwanted CDI object")}
    assert plan.actions[-1] == p.RecordEvent("Warning", "ConfigError",
                                             "Reconciling to error state, unwanted CDI object")
    assert not any(isinstance(a, p.Install | p.ClaimConfigMap | p.AddFinalizer) for a in plan.actions)
    # Once in Error, nothing more is written.
    assert p.plan(observed(cr(status, finalizer=False), standing)) == p.Plan()


def test_a_cr_with_a_phase_but_no_config_map_is_in_an_illegal_state() -> None:
    plan = p.plan(observed(cr(deployed()), p.Standing.FREE))
    assert conditions(status_of(plan))["Degraded"] == ("True", "ConfigError",
                                                      "Reconciling to error state, illegal phase")


def test_while_the_active_cr_goes_away_the_next_one_waits() -> None:
    assert p.plan(observed(cr(finalizer=False), p.Standing.RELEASING)) == p.Plan(requeue_after=1.0)


def test_an_older_observed_version_starts_an_upgrade_then_deletes_stale_objects() -> None:
    old = {**deployed(), "observedVersion": "v1.1.0", "operatorVersion": "v1.1.0", "targetVersion": "v1.1.0"}
    stale = (p.ObjectRef("apps/v1", "Deployment", "cdi-old", "cdi"),)
    waiting = p.plan(observed(cr(old), components={"cdi-deployment": False}, stale=stale))
    status = status_of(waiting)
    assert (status["phase"], status["targetVersion"], status["observedVersion"]) == ("Upgrading", V, "v1.1.0")
    # As upstream's SetStatusCondition: a condition set without a reason loses the old one.
    assert conditions(status) == {"Available": ("True", None, None), "Progressing": ("True", None, None),
                                  "Degraded": ("True", "UpgradeStarted", "Started upgrade to version v1.2.0")}
    assert p.RecordEvent("Normal", "UpgradeStarted", "Started upgrade to version v1.2.0") in waiting.actions
    assert not any(isinstance(a, p.DeleteStale) for a in waiting.actions)  # not before the new version is ready
    done = p.plan(observed(cr(status), components={"cdi-deployment": True}, stale=stale))
    assert kinds(done) == ["Install", "DeleteStale", "RecordEvent", "WriteStatus"]
    assert done.actions[1] == p.DeleteStale(stale)
    final = status_of(done)
    assert (final["phase"], final["observedVersion"]) == ("Deployed", V)
    assert conditions(final)["Degraded"] == ("False", None, None)


def test_a_downgrade_is_refused_with_upstreams_message() -> None:
    newer = {**deployed(), "observedVersion": "v1.3.0"}
    plan = p.plan(observed(cr(newer), components={"cdi-deployment": True}))
    assert not any(isinstance(a, p.Install | p.SyncConfig | p.DeleteStale) for a in plan.actions)
    status = status_of(plan)
    assert status["observedVersion"] == "v1.3.0" and status["phase"] == "Deployed"
    assert conditions(status)["Degraded"] == ("True", "DowngradeRefused", "operator downgraded, will not reconcile")
    assert p.RecordEvent("Warning", "DowngradeRefused", "operator downgraded, will not reconcile") in plan.actions


@pytest.mark.parametrize(("observed_version", "operator", "downgrade"), [
    ("v1.3.0", "v1.2.0", True), ("v1.2.0", "v1.3.0", False), ("1.2.0", "v1.2.0", False),
    ("v1.2.0", "v1.2.0-rc.1", True), ("v1.2.0-rc.2", "v1.2.0-rc.10", False), ("main", "v1.0.0", False),
    ("v2.0.0", "latest", False),
])
def test_versions_order_as_semver(observed_version: str, operator: str, downgrade: bool) -> None:
    assert is_downgrade(observed_version, operator) is downgrade


def test_config_authority_is_taken_once_and_the_config_synced() -> None:
    plan = p.plan(observed(cr(deploying()), has_config_authority=False, config_in_sync=False))
    assert kinds(plan)[:3] == ["TakeConfigAuthority", "Install", "SyncConfig"]
    plan = p.plan(observed(cr(deploying()), has_config_authority=True, config_in_sync=False))
    assert kinds(plan) == ["Install", "SyncConfig"]


def test_refused_customizations_degrade_with_the_reason_and_one_event() -> None:
    problems = (p.Problem("CustomizationRefused", "json patch of Deployment cdi-deployment: no such path /x"),)
    plan = p.plan(observed(cr(deployed()), components={"cdi-deployment": True}, problems=problems))
    status = status_of(plan)
    message = problems[0].message
    assert conditions(status)["Degraded"] == ("True", "CustomizationRefused", message)
    assert p.RecordEvent("Warning", "CustomizationRefused", message) in plan.actions
    again = p.plan(observed(cr(status), components={"cdi-deployment": True}, problems=problems))
    assert kinds(again) == ["Install"]


def test_an_invalid_cert_config_degrades_with_its_own_reason_first() -> None:
    problems = (p.Problem("InvalidCertConfig", "spec.certConfig.server: duration is smaller than renewBefore"),
                p.Problem("CustomizationRefused", "flags.bogus: no such component"))
    plan = p.plan(observed(cr(deployed()), components={"cdi-deployment": True}, problems=problems))
    message = "spec.certConfig.server: duration is smaller than renewBefore; flags.bogus: no such component"
    assert conditions(status_of(plan))["Degraded"] == ("True", "InvalidCertConfig", message)
    assert p.RecordEvent("Warning", "InvalidCertConfig", message) in plan.actions


@pytest.mark.parametrize(("planned", "resync", "renew_in", "wake"), [
    (None, 600.0, None, 600.0),  # nothing due: the resync
    (None, 600.0, 3600.0, 600.0),  # a renewal after the resync: the resync comes first
    (None, 600.0, 120.5, 120.5),  # a renewal before it: then
    (None, 600.0, -3.0, 0.0),  # already due (the clock moved on while reconciling): at once
    (30.0, 600.0, 120.0, 30.0),  # the plan's own requeue is sooner
    (None, None, 90.0, 90.0),  # no resync configured, a certificate still renews in time
    (None, None, None, None),
])
def test_the_reconciler_wakes_at_the_earliest_of_requeue_resync_and_renewal(
        planned: float | None, resync: float | None, renew_in: float | None, wake: float | None) -> None:
    assert p.wake_after(planned, resync, renew_in) == wake


BLOCK = {"uninstallStrategy": "BlockUninstallIfWorkloadsExist"}
REFUSAL = ("Rejecting the uninstall request, since there are still DataVolumes present. Either delete all "
           "DataVolumes or change the uninstall strategy before uninstalling CDI.")


def test_uninstall_is_blocked_while_datavolumes_exist() -> None:
    plan = p.plan(observed(cr(deployed(), deleting=True, spec=BLOCK), workloads_exist=True))
    assert not any(isinstance(a, p.RemoveFinalizer | p.RemoveWorkloads | p.Uninstall) for a in plan.actions)
    status = status_of(plan)
    assert conditions(status)["Degraded"] == ("True", "UninstallBlocked", REFUSAL)
    assert p.RecordEvent("Warning", "UninstallBlocked", REFUSAL) in plan.actions
    assert plan.requeue_after is not None
    assert kinds(p.plan(observed(cr(status, deleting=True, spec=BLOCK), workloads_exist=True))) == []


@pytest.mark.parametrize(("spec", "workloads"), [
    (BLOCK, False), ({"uninstallStrategy": "RemoveWorkloads"}, True), ({}, True),
])
def test_uninstall_removes_workloads_then_the_finalizer(spec: dict[str, Any], workloads: bool) -> None:
    plan = p.plan(observed(cr(deployed(), deleting=True, spec=spec), workloads_exist=workloads))
    assert kinds(plan) == ["WriteStatus", "RemoveWorkloads", "Uninstall", "RemoveFinalizer"]
    assert plan.actions[0] == p.WriteStatus({**deployed(), "phase": "Deleting"})
    assert status_of(plan)["phase"] == "Deleted"


def test_a_deleted_cr_without_our_finalizer_is_left_alone() -> None:
    assert p.plan(observed(cr(deployed(), deleting=True, finalizer=False))) == p.Plan()


def test_an_error_cr_is_deletable_whatever_its_strategy() -> None:
    error = status_of(p.plan(observed(cr(finalizer=False), p.Standing.UNWANTED)))
    plan = p.plan(observed(cr(error, deleting=True, spec=BLOCK), p.Standing.UNWANTED, workloads_exist=True))
    assert kinds(plan) == ["RemoveFinalizer"]
