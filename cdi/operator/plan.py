"""The operator's decisions, pure: from what was observed to the CR's desired status and the ordered actions.

`plan(observed)` follows upstream's controller-lifecycle-operator-sdk reconciler:

* a CR being deleted that holds the finalizer: refused while `BlockUninstallIfWorkloadsExist` and DataVolumes
  exist (Degraded, upstream's webhook message, a Warning event; the finalizer stays), else phase `Deleting`,
  workloads removed, the installation's uninstall step, then the finalizer removed with phase `Deleted`;
* no `cdi-config` ConfigMap yet (`Standing.FREE`): a CR with an empty phase claims it, gets the finalizer and
  phase `Deploying` (DeployStarted, "Started Deployment"); one with a phase is an illegal state (`Error`);
* `cdi-config` controlled by another CR (`UNWANTED`): phase `Error`, ConfigError "Reconciling to error state,
  unwanted CDI object"; while that owner is going away (`RELEASING`), wait;
* the active CR: a newer observedVersion than the operator's is refused ("operator downgraded, will not
  reconcile"); an older one starts an upgrade (phase `Upgrading`, UpgradeStarted "Started upgrade to version
  X"); the installation is applied and the CDIConfig synced; once every component is ready the stale objects
  of older versions are deleted (upgrade), observedVersion becomes the operator's version and the phase
  `Deployed` (DeployCompleted "Deployment Completed"). A Deployed installation whose components stop being
  ready is Degraded; so is one whose CR the installer had to refuse in part (`Problem`: its reason, e.g.
  CustomizationRefused or InvalidCertConfig, and message), with a Warning event when that changes.

`wake_after` combines the plan's own requeue with the resync interval and the installer's next certificate
renewal, so a short-lived certificate is renewed when it falls due, not at the next resync.

The reconciler (`cdi.operator.reconciler`) observes and applies; nothing here reads a clock or a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdi.admission.uninstall import uninstall_refusal
from cdi.operator import contract as c
from cdi.operator.versions import is_downgrade

Status = dict[str, Any]


class Standing(StrEnum):
    """The CR's relation to the `cdi-config` ConfigMap, which marks the active CR."""

    FREE = "free"  # no cdi-config: the CR that reconciles first claims it
    ACTIVE = "active"  # cdi-config is controlled by this CR
    RELEASING = "releasing"  # cdi-config is going away, or its owner is: wait
    UNWANTED = "unwanted"  # another CR is active


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class Problem:
    """A part of the CR the installer could not honour: the Degraded reason and what to tell the user."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """Everything a decision needs, read before deciding."""

    cr: Mapping[str, Any]  # the CDI object as stored
    standing: Standing
    version: str  # the operator's version
    now: str  # RFC 3339, for condition times
    components: Mapping[str, bool] = field(default_factory=dict)  # component → ready; empty: none observed
    workloads_exist: bool = False  # any DataVolume, in any namespace
    config_in_sync: bool = True  # CDIConfig.spec already equals what the CR asks for
    has_config_authority: bool = True  # the CR carries the configAuthority annotation
    problems: tuple[Problem, ...] = ()  # parts of the CR the installer refused (e.g. an invalid certConfig)
    stale: tuple[ObjectRef, ...] = ()  # objects the CR controls that this version no longer installs


# --- Actions, applied in order by the reconciler.

@dataclass(frozen=True)
class ClaimConfigMap:
    """Create `cdi-config`, controlled by the CR: it is now the active one."""


@dataclass(frozen=True)
class AddFinalizer:
    pass


@dataclass(frozen=True)
class TakeConfigAuthority:
    """Annotate the CR as the config authority, copying CDIConfig's spec into `spec.config` if it has none."""


@dataclass(frozen=True)
class Install:
    """Apply the installation for the CR at the operator's version."""


@dataclass(frozen=True)
class SyncConfig:
    """Write the CR's `spec.config` into the CDIConfig singleton's spec."""


@dataclass(frozen=True)
class DeleteStale:
    objects: tuple[ObjectRef, ...]


@dataclass(frozen=True)
class WriteStatus:
    status: Status


@dataclass(frozen=True)
class RemoveWorkloads:
    """Delete every DataVolume and the worker pods."""


@dataclass(frozen=True)
class Uninstall:
    """The installer's delete step (upstream deletes the controller Deployment first)."""


@dataclass(frozen=True)
class RemoveFinalizer:
    status: Status  # written with it (phase Deleted)


@dataclass(frozen=True)
class RecordEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = (ClaimConfigMap | AddFinalizer | TakeConfigAuthority | Install | SyncConfig | DeleteStale | WriteStatus
          | RemoveWorkloads | Uninstall | RemoveFinalizer | RecordEvent)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None


# --- Conditions, as openshift/custom-resource-status's SetStatusCondition: reason and message follow the
# latest call; lastTransitionTime changes only with the status. Heartbeats change only with the condition, so
# an unchanged reconcile writes nothing (and does not wake itself through its own watch).

def set_condition(conditions: list[dict[str, Any]], type_: str, status: bool, now: str,
                  reason: str | None = None, message: str | None = None) -> None:
    wanted: dict[str, Any] = {"type": type_, "status": "True" if status else "False"}
    if reason:
        wanted["reason"] = reason
    if message:
        wanted["message"] = message
    for i, old in enumerate(conditions):
        if old.get("type") != type_:
            continue
        same = {k: old.get(k) for k in ("type", "status", "reason", "message")} == \
            {k: wanted.get(k) for k in ("type", "status", "reason", "message")}
        if same:
            return
        moved = old.get("status") != wanted["status"]
        conditions[i] = {**wanted, "lastTransitionTime": now if moved else old.get("lastTransitionTime", now),
                         "lastHeartbeatTime": now}
        return
    conditions.append({**wanted, "lastTransitionTime": now, "lastHeartbeatTime": now})


def mark(status: Status, now: str, available: bool, progressing: bool, degraded: bool, *,
         reason: str | None = None, message: str | None = None, on: str = "") -> None:
    """Set the three conditions; `reason`/`message` go on the condition named by `on`."""
    conditions = status.setdefault("conditions", [])
    for type_, value in ((c.AVAILABLE, available), (c.PROGRESSING, progressing), (c.DEGRADED, degraded)):
        set_condition(conditions, type_, value, now, *((reason, message) if type_ == on else (None, None)))


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((x for x in status.get("conditions") or [] if x.get("type") == type_), None)


# --- The planner.

def plan(observed: Observed) -> Plan:
    meta = observed.cr.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return _deleting(observed) if c.FINALIZER in (meta.get("finalizers") or []) else Plan()
    if observed.standing is Standing.RELEASING:
        return Plan(requeue_after=1.0)
    if observed.standing is Standing.UNWANTED:
        return _error(observed, c.UNWANTED_MESSAGE)
    if observed.standing is Standing.FREE:
        return _create(observed) if not _status(observed).get("phase") else _error(observed, c.ILLEGAL_PHASE_MESSAGE)
    return _update(observed)


def _status(observed: Observed) -> Status:
    return copy.deepcopy(dict(observed.cr.get("status") or {}))


def _with_status(actions: Sequence[Action], old: Mapping[str, Any], new: Status) -> list[Action]:
    return [*actions, WriteStatus(new)] if new != old else list(actions)


def _error(observed: Observed, message: str) -> Plan:
    """MarkCrFailed: Available False, Progressing False, Degraded True (ConfigError), phase Error, Warning event."""
    old, status = _status(observed), _status(observed)
    mark(status, observed.now, False, False, True, reason=c.CONFIG_ERROR, message=message, on=c.DEGRADED)
    status["phase"] = "Error"
    if status == old:
        return Plan()
    return Plan((WriteStatus(status), RecordEvent("Warning", c.CONFIG_ERROR, message)))


def _create(observed: Observed) -> Plan:
    status = _status(observed)
    mark(status, observed.now, False, True, False, reason=c.DEPLOY_STARTED, message=c.DEPLOY_STARTED_MESSAGE,
         on=c.PROGRESSING)
    status.update(phase="Deploying", operatorVersion=observed.version, targetVersion=observed.version)
    return Plan((ClaimConfigMap(), AddFinalizer(), WriteStatus(status),
                 RecordEvent("Normal", c.DEPLOY_STARTED, c.DEPLOY_STARTED_MESSAGE)), requeue_after=0.0)


def _upgrading(status: Mapping[str, Any]) -> bool:
    """The sdk's IsUpgrading: an observed version that is not the target, unless this is a first deploy."""
    observed_version = status.get("observedVersion") or ""
    deploying = status.get("phase") == "Deploying"
    return (observed_version != "" or not deploying) and observed_version != (status.get("targetVersion") or "")


def _update(observed: Observed) -> Plan:
    old, status = _status(observed), _status(observed)
    now, version = observed.now, observed.version
    observed_version = status.get("observedVersion") or ""
    if observed_version and is_downgrade(observed_version, version):
        available = (condition(status, c.AVAILABLE) or {}).get("status") == "True"
        mark(status, now, available, False, True, reason=c.DOWNGRADE_REFUSED, message=c.DOWNGRADE_MESSAGE,
             on=c.DEGRADED)
        events = [] if status == old else [RecordEvent("Warning", c.DOWNGRADE_REFUSED, c.DOWNGRADE_MESSAGE)]
        return Plan(tuple(_with_status(events, old, status)))
    actions: list[Action] = []
    if not observed.has_config_authority:
        actions.append(TakeConfigAuthority())
    status.update(operatorVersion=version, targetVersion=version)
    if _upgrading(status) and status.get("phase") != "Upgrading":
        message = c.started_upgrade_message(version)
        mark(status, now, True, True, True, reason=c.UPGRADE_STARTED, message=message, on=c.DEGRADED)
        status["phase"] = "Upgrading"
        actions.append(RecordEvent("Normal", c.UPGRADE_STARTED, message))
    actions.append(Install())
    if not observed.config_in_sync or not observed.has_config_authority:
        actions.append(SyncConfig())
    ready = bool(observed.components) and all(observed.components.values())
    requeue: float | None = None
    if ready and _upgrading(status):
        if observed.stale:
            actions.append(DeleteStale(observed.stale))
        actions += _deployed(status, now, version)
    elif ready and status.get("phase") != "Deployed":
        actions += _deployed(status, now, version)
    elif ready:
        set_condition(status.setdefault("conditions", []), c.DEGRADED, False, now)
    elif status.get("phase") == "Deployed":
        waiting = sorted(name for name, up in observed.components.items() if not up)
        set_condition(status.setdefault("conditions", []), c.DEGRADED, True, now, c.NOT_READY,
                      f"Not ready: {', '.join(waiting)}" if waiting else None)
    else:
        requeue = 30.0  # the Deployments' watch wakes us; this is a safety net
    if observed.problems:
        reason, message = observed.problems[0].reason, "; ".join(x.message for x in observed.problems)
        set_condition(status.setdefault("conditions", []), c.DEGRADED, True, now, reason, message)
        said = condition(old, c.DEGRADED) or {}
        if (said.get("reason"), said.get("message")) != (reason, message):
            actions.append(RecordEvent("Warning", reason, message))
    return Plan(tuple(_with_status(actions, old, status)), requeue_after=requeue)


def wake_after(planned: float | None, resync: float | None, renew_in: float | None) -> float | None:
    """When to reconcile again (seconds), whatever happens meanwhile: the earliest of the plan's requeue, the
    resync interval and the next certificate renewal (never negative); None: only when something changes."""
    chosen = [x for x in (planned, resync, None if renew_in is None else max(renew_in, 0.0)) if x is not None]
    return min(chosen) if chosen else None


def _deployed(status: Status, now: str, version: str) -> list[Action]:
    """MarkCrHealthyMessage(DeployCompleted) and phase Deployed at this version."""
    mark(status, now, True, False, False, reason=c.DEPLOY_COMPLETED, message=c.DEPLOY_COMPLETED_MESSAGE,
         on=c.AVAILABLE)
    status.update(phase="Deployed", observedVersion=version)
    return [RecordEvent("Normal", c.DEPLOY_COMPLETED, c.DEPLOY_COMPLETED_MESSAGE)]


def _deleting(observed: Observed) -> Plan:
    old, status = _status(observed), _status(observed)
    refusal = uninstall_refusal(observed.cr, observed.workloads_exist) if observed.standing is Standing.ACTIVE \
        else None
    if refusal is not None:
        available = (condition(status, c.AVAILABLE) or {}).get("status") == "True"
        mark(status, observed.now, available, False, True, reason=c.UNINSTALL_BLOCKED, message=refusal,
             on=c.DEGRADED)
        events = [] if status == old else [RecordEvent("Warning", c.UNINSTALL_BLOCKED, refusal)]
        # DataVolumes are not watched: look again in a while.
        return Plan(tuple(_with_status(events, old, status)), requeue_after=5.0)
    actions: list[Action] = []
    if observed.standing is Standing.ACTIVE:
        status["phase"] = "Deleting"
        actions = [*_with_status([], old, status), RemoveWorkloads(), Uninstall()]
    return Plan((*actions, RemoveFinalizer({**status, "phase": "Deleted"})))
