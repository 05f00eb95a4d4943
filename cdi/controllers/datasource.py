"""The DataSource controller: resolves a DataSource to the volume it names and says whether it is Ready.

Keyed by DataSource (upstream's `datasource-controller`). `spec.source` is a PVC, a VolumeSnapshot, or
another DataSource of the same namespace (a chain of at most one hop: `resolve`, pure, refuses
deeper chains, self references and other namespaces with upstream's reasons). The resolved source is
copied into `status.source` while Ready and cleared otherwise. Readiness (`readiness`, pure):

    pvc       a DataVolume of the same name exists: Ready once it Succeeded (else its phase is the reason);
              no DataVolume: Ready once the claim exists (`NotFound` "PVC not found")
    snapshot  Ready once the snapshot is readyToUse (`SnapshotNotReady`, `NotFound`)
    nothing   `NoSource` "No source PVC set"

Labels matching upstream's copied-label pattern (`*.kubevirt.io/...`, the default instance type and
preference among them) are copied from the DataVolume, claim or snapshot onto the DataSource.
DataSources have no status subresource upstream, so the status is written with the object.

What wakes a DataSource: itself, and changes to the DataVolumes, claims and DataSources it resolves
through (`SourceIndex`, filled as DataSources are reconciled); snapshots are polled while not ready,
since a cluster may not serve their kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.kinds import lookup
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts.annotations import COPIED_LABEL_PATTERN
from cdi.controllers.meta import find_condition, labels_of, name_of, namespace_of, timestamp
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
READY_MESSAGE = "DataSource is ready to be consumed"
MAX_DEPTH = 1


@dataclass(frozen=True)
class Resolved:
    """Where a DataSource leads: `kind` is "pvc" or "snapshot" (None: no source), or `problem` says why not."""

    kind: str | None = None
    namespace: str = ""
    name: str = ""
    via: tuple[str, ...] = ()  # the DataSources passed through, nearest first
    problem: tuple[str, str] | None = None  # (reason, message)


def own_source(doc: Object) -> dict[str, Any]:
    return dict((doc.get("spec") or {}).get("source") or {})


def resolve(doc: Object, get_data_source: Any) -> Resolved:
    """Follow `spec.source` through at most one other DataSource; `get_data_source(namespace, name)` returns
    a DataSource or None. Pure apart from that lookup."""
    namespace, seen = namespace_of(doc), [name_of(doc)]
    source = own_source(doc)
    depth = 0
    while source.get("dataSource"):
        reference = source["dataSource"]
        ref_namespace, ref_name = reference.get("namespace") or namespace, str(reference.get("name") or "")
        if ref_namespace != namespace:
            return Resolved(problem=("CrossNamespaceReference",
                                     f"DataSource references {ref_namespace}/{ref_name} in another namespace"))
        if ref_name in seen:
            return Resolved(problem=("SelfReference", f"DataSource {namespace}/{ref_name} references itself"))
        depth += 1
        if depth > MAX_DEPTH:
            return Resolved(problem=("MaxReferenceDepthReached",
                                     f"DataSource reference depth exceeds the maximum of {MAX_DEPTH}"))
        found = get_data_source(namespace, ref_name)
        if found is None:
            return Resolved(problem=("NotFound", f"Referenced DataSource {namespace}/{ref_name} not found"))
        seen.append(ref_name)
        source = own_source(found)
    for kind in ("pvc", "snapshot"):
        if source.get(kind):
            target = source[kind]
            return Resolved(kind, str(target.get("namespace") or namespace), str(target.get("name") or ""),
                            tuple(seen[1:]))
    return Resolved(via=tuple(seen[1:]))


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    message: str
    labels_from: Object | None = None


def readiness(resolved: Resolved, data_volume: Object | None, claim: Object | None,
              snapshot: Object | None) -> Readiness:
    """Whether the resolved source can be consumed now; pure."""
    if resolved.problem is not None:
        return Readiness(False, *resolved.problem)
    if resolved.kind is None:
        return Readiness(False, "NoSource", "No source PVC set")
    if resolved.kind == "snapshot":
        if snapshot is None:
            return Readiness(False, "NotFound", "Snapshot not found")
        if not (snapshot.get("status") or {}).get("readyToUse"):
            return Readiness(False, "SnapshotNotReady", "Snapshot phase is not ready")
        return Readiness(True, "Ready", READY_MESSAGE, snapshot)
    if data_volume is not None:
        phase = str((data_volume.get("status") or {}).get("phase") or "")
        if phase != "Succeeded":
            return Readiness(False, phase or "Pending", f"Import DataVolume phase {phase or 'Pending'}")
        return Readiness(True, "Ready", READY_MESSAGE, claim or data_volume)
    if claim is None:
        return Readiness(False, "NotFound", "PVC not found")
    return Readiness(True, "Ready", READY_MESSAGE, claim)


def copied_labels(source: Object | None) -> dict[str, str]:
    pattern = re.compile(COPIED_LABEL_PATTERN)
    return {k: v for k, v in labels_of(source or {}).items() if pattern.match(k)}


def desired_status(doc: Object, resolved: Resolved, state: Readiness, now: str) -> dict[str, Any]:
    previous = dict(doc.get("status") or {})
    source: dict[str, Any] = {}
    if state.ready and resolved.kind is not None:
        source = {resolved.kind: {"namespace": resolved.namespace, "name": resolved.name}}
    wanted = {"type": "Ready", "status": "True" if state.ready else "False", "reason": state.reason,
              "message": state.message}
    old = find_condition(previous.get("conditions") or [], "Ready")
    same = old is not None and all(old.get(k) == v for k, v in wanted.items())
    stamp = str(old.get("lastTransitionTime")) if same and old and old.get("lastTransitionTime") else now
    heartbeat = str(old.get("lastHeartbeatTime")) if same and old and old.get("lastHeartbeatTime") else now
    return {"source": source, "conditions": [{**wanted, "lastTransitionTime": stamp, "lastHeartbeatTime": heartbeat}]}


class SourceIndex:
    """Which DataSources resolve through which objects, so that a change to one wakes them."""

    def __init__(self) -> None:
        self._by_source: dict[tuple[str, str, str], set[Key]] = {}
        self._by_key: dict[Key, set[tuple[str, str, str]]] = {}

    def record(self, key: Key, sources: Iterable[tuple[str, str, str]]) -> None:
        for old in self._by_key.pop(key, set()):
            self._by_source.get(old, set()).discard(key)
        wanted = set(sources)
        self._by_key[key] = wanted
        for source in wanted:
            self._by_source.setdefault(source, set()).add(key)

    def users_of(self, kind: str, namespace: str, name: str) -> list[Key]:
        return sorted(self._by_source.get((kind, namespace, name), set()))


class DataSourceReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, index: SourceIndex) -> None:
        self._cluster, self._clock, self._index = cluster, clock, index

    async def reconcile(self, key: Key) -> Result:
        doc = await self._get(CDI_API_VERSION, "DataSource", key.name, key.namespace)
        if doc is None:
            self._index.record(key, ())
            return DONE
        found: dict[str, Object | None] = {}
        for name in _referenced_names(doc):
            found[name] = await self._get(CDI_API_VERSION, "DataSource", name, key.namespace)
        resolved = resolve(doc, lambda namespace, name: found.get(name))
        data_volume = claim = snapshot = None
        if resolved.kind == "pvc":
            data_volume = await self._get(CDI_API_VERSION, "DataVolume", resolved.name, resolved.namespace)
            claim = await self._get("v1", "PersistentVolumeClaim", resolved.name, resolved.namespace)
        elif resolved.kind == "snapshot" and await self._cluster.served(SNAPSHOT_API, "VolumeSnapshot"):
            snapshot = await self._get(SNAPSHOT_API, "VolumeSnapshot", resolved.name, resolved.namespace)
        self._index.record(key, [("DataSource", key.namespace, name) for name in found]
                           + ([(resolved.kind, resolved.namespace, resolved.name)] if resolved.kind else []))
        state = readiness(resolved, data_volume, claim, snapshot)
        status = desired_status(doc, resolved, state, timestamp(self._clock.now()))
        labels = {k: v for k, v in copied_labels(state.labels_from).items() if labels_of(doc).get(k) != v}
        if labels:
            doc = await self._cluster.patch(CDI_API_VERSION, "DataSource", key.name, {"metadata": {"labels": labels}},
                                            key.namespace)
        if _comparable(doc.get("status")) != _comparable(status):
            write = self._cluster.patch_status if lookup(CDI_API_VERSION, "DataSource").status_subresource \
                else self._cluster.patch
            await write(CDI_API_VERSION, "DataSource", key.name, {"status": {**status, "source": status["source"]
                                                                             or None}}, key.namespace)
        return Result(requeue_after=5.0) if resolved.kind == "snapshot" and not state.ready else DONE

    async def _get(self, api_version: str, kind: str, name: str, namespace: str) -> Object | None:
        try:
            return await self._cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return None


def _comparable(status: Any) -> Any:
    status = dict(status or {})
    status["source"] = status.get("source") or {}
    return status


def _referenced_names(doc: Object) -> list[str]:
    reference = own_source(doc).get("dataSource") or {}
    return [str(reference["name"])] if reference.get("name") else []


def controllers(cluster: Cluster, clock: Clock) -> list[ControllerSpec]:
    index = SourceIndex()

    def users(kind: str) -> Any:
        return lambda obj: index.users_of(kind, namespace_of(obj), name_of(obj))
    watches = [Watch(CDI_API_VERSION, "DataVolume", users("pvc")),
               Watch("v1", "PersistentVolumeClaim", users("pvc")),
               Watch(CDI_API_VERSION, "DataSource", users("DataSource"))]
    return [ControllerSpec("datasource-controller", CDI_API_VERSION, "DataSource",
                           DataSourceReconciler(cluster, clock, index), watches=watches, workers=2)]
