"""Upstream's state metrics as pure functions of observed objects: `ObservedState` in, samples out.

`cdi.monitoring.collector` builds an `ObservedState` from the informer caches at every scrape and turns
it into series with these functions; tests check them as tables. Objects are the raw Kubernetes documents
the caches hold (this package sits below the API models and reads only the few fields it needs).

* `datavolume_pending`: upstream's `updatePendingDataVolumesGauge` — DataVolumes in phase "" or Pending
  whose spec names no StorageClass (`spec.pvc` first, else `spec.storage`; an explicit "" names one).
* `storage_profile_info`: upstream's StorageProfile `computeMetrics`, one series per profile whose status
  has a class and a provisioner: `complete` (every claim property set has access modes and a volume
  mode, or the provisioner is one upstream does not support), `default`/`virtdefault` (the class's
  annotations), `rwx`, `smartclone` (a csi-clone strategy with a CSIDriver for the provisioner, or a
  snapshot or unset strategy with a VolumeSnapshotClass of that driver; never for copy) and `degraded`
  (`(!SNO && !rwx) || !smartclone`; upstream's SNO is OpenShift's single-replica topology: here
  `single_node`, true for `cdi serve`, whose volumes all live on one machine).
* `cr_ready`: `kubevirt_cdi_cr_ready` as upstream's operator sets it from the CDI resource: 1 when its
  Available condition is True, 0 when not, -1 ("not initialised", so CDINotReady does not fire) when
  there is no CDI resource at all.
* `progress`: `kubevirt_cdi_{import,clone}_progress_total{ownerUID}` from each DataVolume's
  `status.progress` while it imports or clones on the host, labelled with its claim's uid as the importer
  and clone source label theirs (`cdi serve` only: on Kubernetes the worker pods serve them).
* `pod_restarts`: kube-state-metrics' `kube_pod_container_status_restarts_total` for worker pods (`cdi
  serve` only, which has no kube-state-metrics), so upstream's recording rules work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdi.contracts.annotations import ANN_DEFAULT_STORAGE_CLASS, ANN_DEFAULT_VIRT_STORAGE_CLASS

Obj = Mapping[str, Any]
PENDING_PHASES = frozenset({"", "Pending"})
IMPORT_PHASE, CLONE_PHASE = "ImportInProgress", "CloneInProgress"


@dataclass(frozen=True)
class ObservedState:
    """What the state metrics are computed from; kinds a cluster does not serve are empty."""

    data_volumes: Sequence[Obj] = ()
    storage_classes: Sequence[Obj] = ()
    storage_profiles: Sequence[Obj] = ()
    csi_drivers: Sequence[Obj] = ()
    snapshot_classes: Sequence[Obj] = ()
    cdis: Sequence[Obj] = ()
    claims: Sequence[Obj] = ()
    pods: Sequence[Obj] = ()
    # Provisioners upstream counts as complete without claim property sets (its UnsupportedProvisioners:
    # `cdi.controllers.capabilities` owns the list and the wiring passes it in).
    unsupported_provisioners: frozenset[str] = frozenset()
    single_node: bool = False


@dataclass(frozen=True)
class ProfileInfo:
    storageclass: str
    provisioner: str
    complete: bool
    default: bool
    virtdefault: bool
    rwx: bool
    smartclone: bool
    degraded: bool

    def labels(self) -> list[str]:
        """Label values in `STORAGEPROFILE_LABELS` order, booleans as Go's FormatBool writes them."""
        flags = (self.complete, self.default, self.virtdefault, self.rwx, self.smartclone, self.degraded)
        return [self.storageclass, self.provisioner, *("true" if flag else "false" for flag in flags)]


@dataclass(frozen=True)
class Progress:
    metric: str  # IMPORT_PROGRESS or CLONE_PROGRESS (cdi.contracts.metrics)
    owner_uid: str
    percent: float


@dataclass(frozen=True)
class ContainerRestarts:
    namespace: str
    pod: str
    uid: str
    container: str
    restarts: int


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _annotations(obj: Obj) -> Obj:
    return _meta(obj).get("annotations") or {}


def datavolume_pending(data_volumes: Sequence[Obj]) -> int:
    return sum(1 for dv in data_volumes
               if (dv.get("status") or {}).get("phase", "") in PENDING_PHASES and _uses_default_class(dv))


def _uses_default_class(dv: Obj) -> bool:
    spec = dv.get("spec") or {}
    volume = spec.get("pvc") if spec.get("pvc") is not None else spec.get("storage")
    return volume is None or volume.get("storageClassName") is None


def storage_profile_info(state: ObservedState) -> list[ProfileInfo]:
    classes = {_meta(sc).get("name"): sc for sc in state.storage_classes}
    found = []
    for profile in state.storage_profiles:
        status = profile.get("status") or {}
        name, provisioner = status.get("storageClass"), status.get("provisioner")
        if not name or provisioner is None:
            continue
        sets = status.get("claimPropertySets") or []
        annotations = _annotations(classes.get(name) or {})
        rwx = any("ReadWriteMany" in (cps.get("accessModes") or []) for cps in sets)
        smart = _smart_clone(status.get("cloneStrategy"), provisioner, state)
        found.append(ProfileInfo(
            storageclass=name, provisioner=provisioner,
            complete=provisioner in state.unsupported_provisioners or _complete(sets),
            default=annotations.get(ANN_DEFAULT_STORAGE_CLASS) == "true",
            virtdefault=annotations.get(ANN_DEFAULT_VIRT_STORAGE_CLASS) == "true",
            rwx=rwx, smartclone=smart, degraded=(not state.single_node and not rwx) or not smart))
    return sorted(found, key=lambda info: info.storageclass)


def _complete(sets: Sequence[Obj]) -> bool:
    return bool(sets) and all(cps.get("accessModes") and cps.get("volumeMode") for cps in sets)


def _smart_clone(strategy: str | None, provisioner: str, state: ObservedState) -> bool:
    if strategy == "copy":
        return False
    if strategy == "csi-clone":
        return any(_meta(driver).get("name") == provisioner for driver in state.csi_drivers)
    return any(vsc.get("driver") == provisioner for vsc in state.snapshot_classes)  # snapshot, or unset


def cr_ready(cdis: Sequence[Obj]) -> float:
    if not cdis:
        return -1.0
    available = (any(c.get("type") == "Available" and c.get("status") == "True"
                     for c in (cdi.get("status") or {}).get("conditions") or []) for cdi in cdis)
    return 1.0 if any(available) else 0.0


def progress(state: ObservedState, import_metric: str, clone_metric: str) -> list[Progress]:
    """Import and host-assisted clone progress of DataVolumes in progress, by their claim's uid."""
    claims = {(_meta(c).get("namespace"), _meta(c).get("name")): c for c in state.claims}
    found = []
    for dv in state.data_volumes:
        status = dv.get("status") or {}
        metric = {IMPORT_PHASE: import_metric, CLONE_PHASE: clone_metric}.get(status.get("phase", ""))
        percent = _percent(status.get("progress"))
        claim = claims.get((_meta(dv).get("namespace"), status.get("claimName") or _meta(dv).get("name")))
        if metric is None or percent is None or claim is None or not _meta(claim).get("uid"):
            continue
        found.append(Progress(metric, str(_meta(claim)["uid"]), percent))
    return sorted(found, key=lambda p: (p.metric, p.owner_uid))


def _percent(text: object) -> float | None:
    if not isinstance(text, str) or not text.endswith("%"):
        return None  # "N/A" and unset
    try:
        return float(text[:-1])
    except ValueError:
        return None


def pod_restarts(pods: Sequence[Obj]) -> list[ContainerRestarts]:
    """One sample per container of every pod, as kube-state-metrics reports them."""
    found = []
    for pod in pods:
        meta = _meta(pod)
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            found.append(ContainerRestarts(str(meta.get("namespace", "")), str(meta.get("name", "")),
                                           str(meta.get("uid", "")), str(container.get("name", "")),
                                           int(container.get("restartCount") or 0)))
    return sorted(found, key=lambda r: (r.namespace, r.pod, r.container))
