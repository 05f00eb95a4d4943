"""The clone populator survives a control plane killed after any API call, on both backends.

A small simulated node does what the storage would (binds claims to new volumes, takes snapshots,
grows volumes, finishes host-assisted copies, binds a claim whose volume was handed to it). Between
its steps the populator runs as a *new* reconciler each time — nothing survives in memory, as after a
restart — and, in the crashing runs, its cluster client dies right after its first (or second) write
of each reconcile, so a restart lands after every single API call the populator makes. Every plan
must still end with the target bound, `clonePhase=Succeeded`, each temporary object made once and
none left, and no stray volume."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.events import record_event
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.clone.authorization import CloneAuthorization
from cdi.controllers.clone.populator import ClonePopulator
from cdi.quantity import format_quantity, parse_quantity
from cdi.runtime.types import Key
from tests.controllers.conftest import FixedClock

NS = "default"
DRIVER = "local.csi.example"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
GI = 1 << 30


class Crash(Exception):
    """The controller process died."""


class CrashingCluster:
    """A `Cluster` whose writes die after the `limit`-th one of each reconcile (the write itself lands)."""

    def __init__(self, inner: Cluster, limit: float, creates: Counter[str]) -> None:
        self._inner, self._limit, self._writes, self._creates = inner, limit, 0, creates

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in ("create", "update", "update_status", "patch", "patch_status", "delete"):
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            result = await attribute(*args, **kwargs)
            if name == "create":
                self._creates[f"{args[0]['kind']}/{args[0]['metadata']['name']}"] += 1
            self._writes += 1
            if self._writes >= self._limit:
                raise Crash(name)
            return result
        return write


async def _list(cluster: Cluster, api_version: str, kind: str, namespace: str | None = NS) -> list[Object]:
    return (await cluster.list(api_version, kind, namespace)).items


async def _bind(cluster: Cluster, claim: Object) -> None:
    """What a CSI provisioner and the PV controller do for a claim: a volume of its size, bound to it."""
    meta, spec = claim["metadata"], claim["spec"]
    name = f"pv-{meta['uid']}"
    request = spec["resources"]["requests"]["storage"]
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                          "spec": {"capacity": {"storage": request}, "accessModes": spec["accessModes"],
                                   "volumeMode": spec.get("volumeMode", "Filesystem"),
                                   "storageClassName": spec.get("storageClassName"),
                                   "persistentVolumeReclaimPolicy": "Delete",
                                   "csi": {"driver": DRIVER, "volumeHandle": name},
                                   "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                "namespace": meta["namespace"], "name": meta["name"],
                                                "uid": meta["uid"]}}})
    await _finish_binding(cluster, claim, name, request)


async def _finish_binding(cluster: Cluster, claim: Object, volume: str, capacity: str) -> None:
    meta = claim["metadata"]
    await cluster.patch("v1", "PersistentVolumeClaim", meta["name"], {"spec": {"volumeName": volume}},
                        meta["namespace"])
    await cluster.patch_status("v1", "PersistentVolumeClaim", meta["name"],
                               {"status": {"phase": "Bound", "capacity": {"storage": capacity},
                                           "accessModes": claim["spec"]["accessModes"]}}, meta["namespace"])


async def node_step(cluster: Cluster) -> None:
    """One pass of the simulated node over everything that waits for storage."""
    for snapshot in await _list(cluster, SNAPSHOT_API, "VolumeSnapshot"):
        if not (snapshot.get("status") or {}).get("readyToUse"):
            await cluster.patch_status(SNAPSHOT_API, "VolumeSnapshot", snapshot["metadata"]["name"], {"status": {
                "readyToUse": True, "restoreSize": "1Gi", "creationTime": "2026-11-21T06:00:00Z",
                "boundVolumeSnapshotContentName": f"content-{snapshot['metadata']['name']}"}}, NS)
    volumes = await _list(cluster, "v1", "PersistentVolume", None)
    for claim in await _list(cluster, "v1", "PersistentVolumeClaim"):
        spec, notes = claim["spec"], claim["metadata"].get("annotations") or {}
        handed = [v for v in volumes if v["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]]
        if not spec.get("volumeName") and handed:  # a volume handed over by Rebind: bind to it
            await _finish_binding(cluster, claim, handed[0]["metadata"]["name"],
                                  handed[0]["spec"]["capacity"]["storage"])
        elif not spec.get("volumeName") and (spec.get("dataSourceRef") or {}).get("kind") != "VolumeCloneSource":
            await _bind(cluster, claim)
        elif spec.get("volumeName") and (claim.get("status") or {}).get("phase") == "Bound":
            capacity = parse_quantity(claim["status"]["capacity"]["storage"])
            request = parse_quantity(spec["resources"]["requests"]["storage"])
            if request > capacity:  # expansion: the volume, then the claim
                await cluster.patch("v1", "PersistentVolume", spec["volumeName"],
                                    {"spec": {"capacity": {"storage": format_quantity(request)}}})
                await cluster.patch_status("v1", "PersistentVolumeClaim", claim["metadata"]["name"],
                                           {"status": {"capacity": {"storage": format_quantity(request)}}}, NS)
            if ann.ANN_CLONE_REQUEST in notes and notes.get(ann.ANN_POD_PHASE) != "Succeeded":
                await cluster.patch("v1", "PersistentVolumeClaim", claim["metadata"]["name"], {"metadata": {
                    "annotations": {ann.ANN_POD_PHASE: "Succeeded", ann.ANN_CLONE_OF: "true"}}}, NS)


async def _setup(cluster: Cluster, strategy: str, snapshot_source: bool) -> Key:
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local"},
                          "provisioner": DRIVER, "allowVolumeExpansion": True})
    profile = await cluster.create({"apiVersion": CDI_API_VERSION, "kind": "StorageProfile",
                                    "metadata": {"name": "local"}, "spec": {}})
    await cluster.patch_status(CDI_API_VERSION, "StorageProfile", profile["metadata"]["name"],
                               {"status": {"storageClass": "local", "cloneStrategy": strategy}})
    await cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotClass", "driver": DRIVER,
                          "deletionPolicy": "Delete", "metadata": {"name": "snaps", "annotations": {
                              "snapshot.storage.kubernetes.io/is-default-class": "true"}}})
    source = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "golden", "namespace": NS},
              "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                       "resources": {"requests": {"storage": "1Gi"}}}}
    await cluster.create(source)
    reference: dict[str, str] = {"kind": "PersistentVolumeClaim", "name": "golden"}
    if snapshot_source:
        await cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
                              "metadata": {"name": "golden-snap", "namespace": NS},
                              "spec": {"source": {"persistentVolumeClaimName": "golden"}}})
        # A copy from a snapshot is what a snapshot of another driver gets (NoProvisionerMatch): it is
        # restored in that driver's class, then copied.
        driver = "other.csi.example" if strategy == "copy" else DRIVER
        await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                              "metadata": {"name": "other"}, "provisioner": "other.csi.example"})
        await cluster.create({"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshotContent",
                              "metadata": {"name": "content-golden-snap"},
                              "spec": {"driver": driver, "deletionPolicy": "Delete", "sourceVolumeMode": "Filesystem",
                                       "source": {"snapshotHandle": "h"},
                                       "volumeSnapshotRef": {"name": "golden-snap", "namespace": NS}}})
        reference = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "golden-snap"}
    await cluster.create({"apiVersion": CDI_API_VERSION, "kind": "VolumeCloneSource",
                          "metadata": {"name": "clone-src", "namespace": NS}, "spec": {"source": reference}})
    ref = {"apiGroup": "cdi.kubevirt.io", "kind": "VolumeCloneSource", "name": "clone-src"}
    await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                          "metadata": {"name": "target", "namespace": NS},
                          "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                   "resources": {"requests": {"storage": "2Gi"}},
                                   "dataSource": ref, "dataSourceRef": ref}})
    await node_step(cluster)  # the source gets its volume (and the user's snapshot its content)
    return Key(NS, "target")


async def _clone(cluster: Cluster, clock: FixedClock, limit: float) -> tuple[Object, Counter[str]]:
    creates: Counter[str] = Counter()
    key = Key(NS, "target")
    for _ in range(60):
        populator = ClonePopulator(CrashingCluster(cluster, limit, creates),  # type: ignore[arg-type]
                                   clock, CloneAuthorization(None, lambda: 0.0))
        try:
            await populator.reconcile(key)
        except Crash:
            pass
        target = await cluster.get("v1", "PersistentVolumeClaim", "target", NS)
        if (target["metadata"].get("annotations") or {}).get(ann.ANN_CLONE_PHASE) == "Succeeded" \
                and ann.FINALIZER_CLONE_POPULATOR not in (target["metadata"].get("finalizers") or []):
            return target, creates
        await node_step(cluster)
    raise AssertionError(f"clone did not finish: {target['metadata'].get('annotations')}")


PLANS = [("snapshot", False), ("csi-clone", False), ("copy", False), ("snapshot", True), ("copy", True)]


@pytest.mark.parametrize("limit", [1, 2, math.inf], ids=["crash-after-1st-write", "crash-after-2nd-write", "no-crash"])
@pytest.mark.parametrize(("strategy", "snapshot_source"), PLANS,
                         ids=[f"{'snapshot' if s else 'pvc'}-{strategy}" for strategy, s in PLANS])
async def test_every_plan_finishes_whatever_call_the_controller_dies_after(
        cluster: Cluster, clock: FixedClock, strategy: str, snapshot_source: bool, limit: float) -> None:
    await _setup(cluster, strategy, snapshot_source)
    target, creates = await _clone(cluster, clock, limit)
    notes = target["metadata"]["annotations"]
    expected_type = "snapshot" if snapshot_source and strategy != "copy" else strategy
    assert notes[ann.ANN_CLONE_TYPE] == expected_type
    assert notes[ann.ANN_POPULATOR_PROGRESS] == "100.0%"
    assert target["status"]["phase"] == "Bound" and target["spec"]["volumeName"]
    assert parse_quantity(target["status"]["capacity"]["storage"]) >= 2 * GI
    assert all(count == 1 for count in creates.values()), creates  # each temporary object made once
    # (a deleted claim may linger with Kubernetes' pvc-protection finalizer: this test cluster runs no
    # controller that removes it)
    leftover = [c["metadata"]["name"] for c in await _list(cluster, "v1", "PersistentVolumeClaim")
                if ann.LABEL_OWNED_BY_UID in (c["metadata"].get("labels") or {})
                and not c["metadata"].get("deletionTimestamp")]
    leftover += [s["metadata"]["name"] for s in await _list(cluster, SNAPSHOT_API, "VolumeSnapshot")
                 if ann.LABEL_OWNED_BY_UID in (s["metadata"].get("labels") or {})]
    assert leftover == []
    # The temporary claim's volume was handed over, not copied again: the volumes still claimed are the
    # source's and the target's (a deleted temporary source claim's volume is the reclaimer's to free).
    claims = {c["metadata"]["name"] for c in await _list(cluster, "v1", "PersistentVolumeClaim")
              if not c["metadata"].get("deletionTimestamp")}
    claimed = sorted(v["spec"]["claimRef"]["name"] for v in await _list(cluster, "v1", "PersistentVolume", None)
                     if v["spec"]["claimRef"]["name"] in claims)
    assert claimed == ["golden", "target"]
    if strategy == "copy":
        assert notes.get(ann.ANN_CLONE_OF) == "true"
        expected_reason = "The storageclass provisioner does not match the volumesnapshotcontent driver" \
            if snapshot_source else None
        assert notes.get(ann.ANN_CLONE_FALLBACK_REASON) == expected_reason
    with pytest.raises(NotFound):
        await cluster.get(SNAPSHOT_API, "VolumeSnapshot", f"tmp-snapshot-{target['metadata']['uid']}", NS)


async def test_a_waiting_phase_repeats_its_temporary_claims_warnings_on_the_target(cluster: Cluster,
                                                                                    clock: FixedClock) -> None:
    key = await _setup(cluster, "copy", False)
    populator = ClonePopulator(cluster, clock, CloneAuthorization(None, lambda: 0.0))
    await populator.reconcile(key)  # strategy recorded
    await populator.reconcile(key)  # HostClone: the temporary claim is made
    target = await cluster.get("v1", "PersistentVolumeClaim", "target", NS)
    tmp = await cluster.get("v1", "PersistentVolumeClaim", f"tmp-pvc-{target['metadata']['uid']}", NS)
    await record_event(cluster, tmp, "Warning", "CloneSourceInUse", "pod default/vm using PersistentVolumeClaim golden",
                       component="clone-controller", clock=clock.now)
    for _ in range(2):  # said once, however often the phase is looked at
        await populator.reconcile(key)
    events = [(e["reason"], e["message"]) for e in (await cluster.list("v1", "Event", NS)).items
              if e["involvedObject"]["name"] == "target" and e["reason"] == "CloneSourceInUse"]
    assert events == [("CloneSourceInUse", f"[{tmp['metadata']['name']}] : pod default/vm using "
                                           "PersistentVolumeClaim golden")]
