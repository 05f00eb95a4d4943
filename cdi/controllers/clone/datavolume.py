"""The clone DataVolume controllers: `spec.source.pvc` and `spec.source.snapshot`, any namespace.

Keyed by DataVolume (upstream's `datavolume-pvc-clone-controller` and
`datavolume-snapshot-clone-controller`). For a DataVolume without its claim yet it checks that the
source exists (`CloneWithoutSource` while not), validates content types and sizes
(`CloneValidationFailed`), sizes a `storage:` request without a size from the source, and then:

* when the target's class is served by a CSI driver (a CSIDriver object names its provisioner), it
  creates the VolumeCloneSource `volume-clone-source-<dv uid>` in the source's namespace and the
  target claim with `dataSourceRef` to it — the clone populator (`cdi.controllers.clone.populator`)
  does the rest;
* otherwise it falls back, as upstream does, to a host-assisted copy straight into the target claim
  (`k8s.io/CloneRequest`), with the `NoPopulator` Warning and `cloneFallbackReason`.

The DataVolume's status follows the claim (`cdi.controllers.datavolume.status` with the clone
phases: CloneScheduled, SnapshotForSmartCloneInProgress, CloneFromSnapshotSourceInProgress,
CSICloneInProgress, PrepClaimInProgress, RebindInProgress, CloneInProgress, Succeeded), the chosen
`cloneType` is copied onto it, and once it Succeeded (or is deleted) the VolumeCloneSource goes.

Ours: while a host-assisted copy runs (straight into the claim, or into the populator's temporary claim),
its source pod's byte counters become bytes/rate/ETA annotations on the DataVolume and, when they stop
moving for the stall timeout, a `Stalled` condition with an event, as for imports
(`cdi.controllers.clone.transfer`); the copy is polled every 2 s while it runs.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cdi.api import DataVolume, ManifestError, parse_object
from cdi.api.meta import CDI_API_VERSION, CDI_GROUP
from cdi.cluster.errors import AlreadyExists, Forbidden, Invalid, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.annotations import ClonePhase
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.clone.authorization import CloneAuthorization
from cdi.controllers.clone.facts import SNAPSHOT_API, capacity_of, get_or_none, quantity_or_none
from cdi.controllers.clone.plans import SNAPSHOT_SOURCE, clone_source_name
from cdi.controllers.clone.populator import CLONE_SOURCE_KIND
from cdi.controllers.clone.strategy import Fallback
from cdi.controllers.clone.transfer import REQUEUE, HostCopyWatch
from cdi.controllers.config_view import ConfigView
from cdi.controllers.datavolume.claim import may_clone, new_claim
from cdi.controllers.datavolume.render import RenderError, StorageView, render_pvc_spec
from cdi.controllers.datavolume.status import Observed, Operation, dv_status
from cdi.controllers.meta import (
    annotations_of,
    controller_reference,
    find_condition,
    is_controlled_by,
    is_deleting,
    name_of,
    namespace_of,
    storage_request,
    timestamp,
    uid_of,
)
from cdi.controllers.progress import ProgressScraper
from cdi.controllers.progresswatch import DEFAULT_STALL_TIMEOUT
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys
from cdi.tokens import TokenRejected

log = logging.getLogger(__name__)

# The populator's phase on the claim → the DataVolume's phase (upstream's populatorPhaseMap).
POPULATOR_PHASES = {
    ClonePhase.PENDING: "CloneScheduled",
    ClonePhase.SNAPSHOT: "SnapshotForSmartCloneInProgress",
    ClonePhase.SNAPSHOT_CLONE: "CloneFromSnapshotSourceInProgress",
    ClonePhase.CSI_CLONE: "CSICloneInProgress",
    ClonePhase.PREP_CLAIM: "PrepClaimInProgress",
    ClonePhase.REBIND: "RebindInProgress",
    ClonePhase.HOST_CLONE: "CloneInProgress",
    ClonePhase.SUCCEEDED: "Succeeded",
}
IN_FLIGHT = ("CloneScheduled", "SnapshotForSmartCloneInProgress", "CloneFromSnapshotSourceInProgress",
             "CSICloneInProgress", "PrepClaimInProgress", "RebindInProgress", "CloneInProgress")


@dataclass(frozen=True)
class CloneSourceRef:
    kind: str  # "PersistentVolumeClaim" or "VolumeSnapshot"
    namespace: str
    name: str

    @property
    def word(self) -> str:
        return "snapshot" if self.kind == SNAPSHOT_SOURCE else "pvc"


def clone_source_of(dv: DataVolume, namespace: str) -> CloneSourceRef | None:
    """What a DataVolume clones, if it clones (the source's namespace defaults to its own)."""
    source = dv.spec.source
    if source is None:
        return None
    if source.pvc is not None:
        return CloneSourceRef("PersistentVolumeClaim", source.pvc.namespace or namespace, source.pvc.name)
    if source.snapshot is not None:
        return CloneSourceRef(SNAPSHOT_SOURCE, source.snapshot.namespace or namespace, source.snapshot.name)
    return None


def populated_phase(notes: dict[str, str], previous: str) -> str | None:
    """The DataVolume phase a clone target's annotations mean; None leaves it to the common rules."""
    phase = notes.get(ann.ANN_CLONE_PHASE)
    if phase == ClonePhase.ERROR:
        return previous if previous in IN_FLIGHT else "CloneScheduled"  # upstream: an event, not Failed
    if phase in POPULATOR_PHASES:
        return POPULATOR_PHASES[ClonePhase(phase)]
    if ann.ANN_CLONE_REQUEST in notes:  # host-assisted straight into the target (no populator)
        pod_phase = notes.get(ann.ANN_POD_PHASE)
        if pod_phase == "Succeeded":
            return "Succeeded"
        return "CloneInProgress" if pod_phase == "Running" else "CloneScheduled"
    return None


def clone_operation(source: CloneSourceRef, dv_namespace: str, dv_name: str) -> Operation:
    origin = f"{source.namespace}/{source.name}"
    into = f"{dv_namespace}/{{claim}}"
    transitions = {
        "CloneScheduled": ("Normal", "CloneScheduled", f"Cloning from {origin} into {into} scheduled"),
        "CloneInProgress": ("Normal", "CloneInProgress", f"Cloning from {origin} into {into} in progress"),
        "SnapshotForSmartCloneInProgress": ("Normal", "SnapshotForSmartCloneInProgress",
                                            f"Creating snapshot for smart-clone is in progress (for pvc {origin})"),
        "CloneFromSnapshotSourceInProgress": (
            "Normal", "CloneFromSnapshotSourceInProgress",
            f"Creating PVC from snapshot source is in progress (for {source.word} {origin})"),
        "CSICloneInProgress": ("Normal", "CSICloneInProgress", f"CSI Volume clone in progress (for pvc {origin})"),
        "PrepClaimInProgress": ("Normal", "PrepClaimInProgress",
                                f"Prepping PersistentVolumeClaim for DataVolume {dv_namespace}/{dv_name}"),
        "RebindInProgress": ("Normal", "RebindInProgress",
                             f"Rebinding PersistentVolumeClaim for DataVolume {dv_namespace}/{dv_name}"),
        "Succeeded": ("Normal", "CloneSucceeded", f"Successfully cloned from {origin} into {into}"),
        "Failed": ("Warning", "CloneFailed", f"Cloning from {origin} into {into} failed: {{message}}"),
    }
    return Operation(in_flight=IN_FLIGHT, worker_phase=lambda notes, previous: previous
                     if previous in IN_FLIGHT else "CloneScheduled",
                     transitions=transitions, reports_progress=True, populated_phase=populated_phase)


def progress_of(claim: Object | None) -> float | None:
    text = annotations_of(claim).get(ann.ANN_POPULATOR_PROGRESS, "") if claim is not None else ""
    try:
        return float(text.rstrip("%")) if text else None
    except ValueError:
        return None


class CloneDataVolumeReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, source_kind: str, authorization: CloneAuthorization,
                 waiting_on: SourceRefIndex | None = None, *, scraper: ProgressScraper | None = None,
                 stall_timeout: timedelta = DEFAULT_STALL_TIMEOUT, events: EventSink | None = None) -> None:
        self._cluster = cluster
        self._events = events or DirectEvents(cluster, clock.now)
        self._copies = HostCopyWatch(cluster, clock, scraper, stall_timeout)
        self._clock = clock
        self._authorization = authorization
        self._waiting_on = waiting_on or SourceRefIndex()
        self._source_kind = source_kind
        self._component = ("datavolume-snapshot-clone-controller" if source_kind == SNAPSHOT_SOURCE
                           else "datavolume-pvc-clone-controller")

    async def reconcile(self, key: Key) -> Result:
        doc = await get_or_none(self._cluster, CDI_API_VERSION, "DataVolume", key.name, key.namespace)
        if doc is None:
            self._copies.forget(key.namespace, key.name)
            return DONE
        try:
            dv = parse_object(doc)
        except ManifestError:
            return DONE
        assert isinstance(dv, DataVolume)
        source, waiting = clone_source_of(dv, key.namespace), None
        if dv.spec.source_ref is not None and dv.spec.source_ref.kind == "DataSource":
            source, waiting = await self._through_data_source(dv, key)
        if source is None or source.kind != self._source_kind:
            return DONE
        if is_deleting(doc):
            self._copies.forget(key.namespace, key.name)
            await self._release(doc, source)
            return DONE
        claim, problem = await self._claim(dv, doc, source, waiting)
        if claim is not None and problem is None:
            problem = await self._carry_token(doc, claim, source)
        class_name = ((claim or {}).get("spec") or {}).get("storageClassName")
        storage_class = await get_or_none(self._cluster, "storage.k8s.io/v1", "StorageClass", class_name) \
            if class_name else None
        wffc = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        copying, stall = await self._copies.observe(doc, claim)
        plan = dv_status(Observed(doc, claim, wffc, progress_of(claim), problem, timestamp(self._clock.now()), stall),
                         clone_operation(source, key.namespace, key.name))
        if doc.get("status") != plan.status:
            await self._cluster.patch_status(CDI_API_VERSION, "DataVolume", key.name, {"status": plan.status},
                                             key.namespace)
        for type_, reason, message in plan.events:
            await self._event(doc, type_, reason, message)
        await self._copy_clone_type(doc, claim)
        if plan.status.get("phase") == "Succeeded":
            await self._release(doc, source)
        if problem:
            return Result(requeue_after=5.0)
        return Result(requeue_after=REQUEUE[copying]) if copying in REQUEUE else DONE

    async def _through_data_source(self, dv: DataVolume,
                                   key: Key) -> tuple[CloneSourceRef | None, tuple[str, str] | None]:
        """The source a `sourceRef` DataVolume clones: its DataSource's resolved source once it is Ready.
        While it is not, the source its spec names (for the messages) and why the DataVolume waits; the
        DataSource changing wakes the DataVolume (`SourceRefIndex`)."""
        assert dv.spec.source_ref is not None
        namespace = dv.spec.source_ref.namespace or key.namespace
        name = dv.spec.source_ref.name
        self._waiting_on.record(key, [(namespace, name)])
        data_source = await get_or_none(self._cluster, CDI_API_VERSION, "DataSource", name, namespace)
        if data_source is None:
            missing = CloneSourceRef("PersistentVolumeClaim", namespace, name)
            return missing, ("DataSourceNotFound", f"DataSource {namespace}/{name} does not exist")
        status = data_source.get("status") or {}
        ready = find_condition(status.get("conditions") or [], "Ready") or {}
        resolved = status.get("source") or {}
        for word, kind in (("pvc", "PersistentVolumeClaim"), ("snapshot", SNAPSHOT_SOURCE)):
            if ready.get("status") == "True" and resolved.get(word):
                target = resolved[word]
                return CloneSourceRef(kind, str(target.get("namespace") or namespace), str(target["name"])), None
        spec = (data_source.get("spec") or {}).get("source") or {}
        kind = SNAPSHOT_SOURCE if spec.get("snapshot") else "PersistentVolumeClaim"
        named = spec.get("snapshot") or spec.get("pvc") or {}
        placeholder = CloneSourceRef(kind, str(named.get("namespace") or namespace), str(named.get("name") or name))
        because = f"{ready.get('reason')}: {ready.get('message')}" if ready.get("reason") else "not resolved yet"
        return placeholder, ("DataSourceNotReady", f"DataSource {namespace}/{name} is not ready ({because})")

    async def _claim(self, dv: DataVolume, doc: Object, source: CloneSourceRef,
                     waiting: tuple[str, str] | None = None) -> tuple[Object | None, tuple[str, str] | None]:
        meta = doc["metadata"]
        claim = await get_or_none(self._cluster, "v1", "PersistentVolumeClaim", meta["name"], meta["namespace"])
        if claim is not None:
            if not is_controlled_by(claim, doc) and annotations_of(claim).get(ann.ANN_POPULATED_FOR) != meta["name"]:
                return None, ("ErrResourceExists",
                              f'Resource "{meta["name"]}" already exists and is not managed by DataVolume')
            return claim, None
        if (doc.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None, None
        if waiting is not None:
            return None, waiting
        if source.namespace != meta["namespace"] and ann.ANN_EXTENDED_CLONE_TOKEN not in annotations_of(doc):
            try:
                extended = self._authorization.extend_for_datavolume(doc, source.kind, source.namespace, source.name)
            except TokenRejected as e:
                return None, ("CloneValidationFailed", f"cross-namespace clone not authorized: {e.message}")
            doc = await self._cluster.patch(CDI_API_VERSION, "DataVolume", meta["name"],
                                            {"metadata": {"annotations": {ann.ANN_EXTENDED_CLONE_TOKEN: extended}}},
                                            meta["namespace"])
        source_object = await self._source_object(source)
        if source_object is None:
            return None, ("CloneWithoutSource", f"The source {source.word} {source.name} doesn't exist")
        try:
            spec = await self._target_spec(dv, doc, source, source_object)
        except RenderError as e:
            return None, (e.reason, e.message)
        return await self._create_claim(dv, doc, source, spec)

    async def _source_object(self, source: CloneSourceRef) -> Object | None:
        if source.kind == SNAPSHOT_SOURCE:
            if not await self._cluster.served(SNAPSHOT_API, "VolumeSnapshot"):
                return None
            return await get_or_none(self._cluster, SNAPSHOT_API, "VolumeSnapshot", source.name, source.namespace)
        return await get_or_none(self._cluster, "v1", "PersistentVolumeClaim", source.name, source.namespace)

    async def _target_spec(self, dv: DataVolume, doc: Object, source: CloneSourceRef,
                           source_object: Object) -> dict[str, Any]:
        if source.kind != SNAPSHOT_SOURCE:
            wanted = dv.spec.content_type.value
            have = annotations_of(source_object).get(ann.ANN_CONTENT_TYPE) or "kubevirt"
            if wanted != have:
                raise RenderError("CloneValidationFailed", "The clone doesn't meet the validation requirements: "
                                  f"source contentType ({have}) and target contentType ({wanted}) do not match")
        sized = self._with_detected_size(dv, doc, source, source_object)
        spec = render_pvc_spec(sized, await self._storage_view())
        source_request = storage_request(source_object.get("spec") or {}) if source.kind != SNAPSHOT_SOURCE else None
        explicit = dv.spec.pvc is not None or spec.get("volumeMode") == "Block"
        target_request = storage_request(spec) or 0
        if explicit and source_request is not None and source_request > target_request:
            raise RenderError("CloneValidationFailed", "The clone doesn't meet the validation requirements: target "
                              f"resources requests storage size is smaller than the source {target_request} < "
                              f"{source_request}")
        return spec

    def _with_detected_size(self, dv: DataVolume, doc: Object, source: CloneSourceRef,
                            source_object: Object) -> DataVolume:
        """A `storage:` request without a size takes the source's: the cached virtual size when the
        source's capacity has not changed since it was recorded, else its capacity (a snapshot: its
        restoreSize). The `storage` rendering then adds the filesystem overhead as for any request."""
        storage = dv.spec.storage
        if storage is None or storage_request(dict(doc["spec"].get("storage") or {})):
            return dv
        if source.kind == SNAPSHOT_SOURCE:
            size = quantity_or_none((source_object.get("status") or {}).get("restoreSize"))
        else:
            notes = annotations_of(source_object)
            capacity = capacity_of(source_object)
            cached = quantity_or_none(notes.get(ann.ANN_VIRTUAL_SIZE))
            recorded_capacity = quantity_or_none(notes.get(ann.ANN_SOURCE_CAPACITY))
            size = cached if cached and recorded_capacity == capacity else capacity
        if not size:
            raise RenderError("CloneScheduled", f"waiting for the size of the source {source.word} {source.name}")
        sized = copy.deepcopy(doc)
        requests = sized["spec"]["storage"].setdefault("resources", {}).setdefault("requests", {})
        requests["storage"] = str(size)
        parsed = parse_object(sized)
        assert isinstance(parsed, DataVolume)
        return parsed

    async def _storage_view(self) -> StorageView:
        classes = (await self._cluster.list("storage.k8s.io/v1", "StorageClass")).items
        profiles = {name_of(p): p for p in (await self._cluster.list(CDI_API_VERSION, "StorageProfile")).items}
        return StorageView(classes, profiles, await self._config())

    async def _config(self) -> ConfigView:
        return ConfigView.of(await get_or_none(self._cluster, CDI_API_VERSION, "CDIConfig", CONFIG_NAME))

    async def _has_populator(self, spec: dict[str, Any]) -> bool:
        """Whether the target's class is a CSI driver's (upstream: a CSIDriver object names its provisioner)."""
        class_name = spec.get("storageClassName")
        storage_class = await get_or_none(self._cluster, "storage.k8s.io/v1", "StorageClass", class_name) \
            if class_name else None
        if storage_class is None or not await self._cluster.served("storage.k8s.io/v1", "CSIDriver"):
            return False
        driver = await get_or_none(self._cluster, "storage.k8s.io/v1", "CSIDriver",
                                   str(storage_class.get("provisioner") or ""))
        return driver is not None

    async def _create_claim(self, dv: DataVolume, doc: Object, source: CloneSourceRef,
                            spec: dict[str, Any]) -> tuple[Object | None, tuple[str, str] | None]:
        meta = doc["metadata"]
        cross = source.namespace != meta["namespace"]
        notes: dict[str, str] = {}
        populator = await self._has_populator(spec)
        if populator:
            await self._ensure_clone_source(doc, source, cross)
            ref = {"apiGroup": CDI_GROUP, "kind": CLONE_SOURCE_KIND, "name": clone_source_name(uid_of(doc))}
            spec = {**spec, "dataSourceRef": ref, "dataSource": dict(ref)}
            if cross:
                notes[ann.ANN_DATA_SOURCE_NAMESPACE] = source.namespace
        elif source.kind == SNAPSHOT_SOURCE:
            return None, (Fallback.NO_POPULATOR.value, "cloning a snapshot into a storage class without a CSI driver "
                          "is not supported; choose a class whose provisioner has a CSIDriver")
        else:
            notes.update({ann.ANN_CLONE_REQUEST: f"{source.namespace}/{source.name}", ann.ANN_CLONE_TYPE: "copy",
                          ann.ANN_CLONE_FALLBACK_REASON: Fallback.NO_POPULATOR.message})
        claim_doc = new_claim(dv, doc, spec, await self._config(), notes)
        for token in (ann.ANN_CLONE_TOKEN, ann.ANN_EXTENDED_CLONE_TOKEN):  # the claim gets its own, below
            claim_doc["metadata"]["annotations"].pop(token, None)
        try:
            claim = await self._cluster.create(claim_doc)
        except (Invalid, Forbidden) as e:
            return None, ("ErrClaimNotValid", f"the PVC for this DataVolume was refused: {e.message}")
        except AlreadyExists:
            claim = await self._cluster.get("v1", "PersistentVolumeClaim", meta["name"], meta["namespace"])
        if not populator:
            await self._event(claim, "Warning", Fallback.NO_POPULATOR.value, Fallback.NO_POPULATOR.message)
        log.info("created clone target %s/%s from %s %s/%s", meta["namespace"], meta["name"], source.word,
                 source.namespace, source.name)
        return claim, None

    async def _carry_token(self, doc: Object, claim: Object, source: CloneSourceRef) -> tuple[str, str] | None:
        """A cross-namespace target claim gets an extended token minted for its own uid."""
        if source.namespace == namespace_of(claim) or ann.ANN_EXTENDED_CLONE_TOKEN in annotations_of(claim) \
                or not is_controlled_by(claim, doc):
            return None
        try:
            token = self._authorization.extend_for_claim(doc, claim, source.kind, source.namespace, source.name)
        except TokenRejected as e:
            return "CloneValidationFailed", f"cross-namespace clone not authorized: {e.message}"
        await self._cluster.patch("v1", "PersistentVolumeClaim", name_of(claim),
                                  {"metadata": {"annotations": {ann.ANN_EXTENDED_CLONE_TOKEN: token}}},
                                  namespace_of(claim))
        return None

    async def _ensure_clone_source(self, doc: Object, source: CloneSourceRef, cross: bool) -> None:
        meta = doc["metadata"]
        name = clone_source_name(uid_of(doc))
        if cross:
            finalizers = list(meta.get("finalizers") or [])
            if ann.FINALIZER_DATA_VOLUME not in finalizers:
                await self._cluster.patch(CDI_API_VERSION, "DataVolume", meta["name"],
                                          {"metadata": {"finalizers": [*finalizers, ann.FINALIZER_DATA_VOLUME]}},
                                          meta["namespace"])
        metadata: dict[str, Any] = {"name": name, "namespace": source.namespace}
        if cross:
            metadata["annotations"] = {ann.ANN_OWNED_BY_DATA_VOLUME: f"{meta['namespace']}/{meta['name']}"}
        else:
            metadata["ownerReferences"] = [controller_reference(doc)]
        reference = {"kind": source.kind, "name": source.name}
        if source.kind == SNAPSHOT_SOURCE:
            reference["apiGroup"] = "snapshot.storage.k8s.io"
        body = {"apiVersion": CDI_API_VERSION, "kind": CLONE_SOURCE_KIND, "metadata": metadata,
                "spec": {"source": reference}}
        try:
            await self._cluster.create(body)
        except AlreadyExists:
            pass

    async def _release(self, doc: Object, source: CloneSourceRef) -> None:
        """After success or on deletion: the VolumeCloneSource and the cross-namespace finalizer go."""
        try:
            await self._cluster.delete(CDI_API_VERSION, CLONE_SOURCE_KIND, clone_source_name(uid_of(doc)),
                                       source.namespace)
        except NotFound:
            pass
        finalizers = list(doc["metadata"].get("finalizers") or [])
        if ann.FINALIZER_DATA_VOLUME in finalizers:
            finalizers.remove(ann.FINALIZER_DATA_VOLUME)
            await self._cluster.patch(CDI_API_VERSION, "DataVolume", name_of(doc),
                                      {"metadata": {"finalizers": finalizers}}, doc["metadata"]["namespace"])

    async def _copy_clone_type(self, doc: Object, claim: Object | None) -> None:
        chosen = annotations_of(claim).get(ann.ANN_CLONE_TYPE) if claim is not None else None
        if chosen and annotations_of(doc).get(ann.ANN_CLONE_TYPE) != chosen:
            await self._cluster.patch(CDI_API_VERSION, "DataVolume", name_of(doc),
                                      {"metadata": {"annotations": {ann.ANN_CLONE_TYPE: chosen}}},
                                      doc["metadata"]["namespace"])

    async def _event(self, obj: Object, type_: str, reason: str, message: str) -> None:
        await self._events.record(obj, type_, reason, message, component=self._component)


class SourceRefIndex:
    """Which DataVolumes clone through which DataSource, so that a DataSource turning Ready wakes them."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], set[Key]] = {}

    def record(self, key: Key, data_sources: list[tuple[str, str]]) -> None:
        for users in self._users.values():
            users.discard(key)
        for data_source in data_sources:
            self._users.setdefault(data_source, set()).add(key)

    def users_of(self, obj: Object) -> list[Key]:
        return sorted(self._users.get((namespace_of(obj), name_of(obj)), set()))


def controllers(cluster: Cluster, clock: Clock, authorization: CloneAuthorization,
                scraper: ProgressScraper | None = None, *,
                stall_timeout: timedelta = DEFAULT_STALL_TIMEOUT,
                events: EventSink | None = None) -> list[ControllerSpec]:
    """`scraper`: reads host-assisted copies' source pods for bytes, rate, ETA and stalls; None: not watched."""
    claims = Watch("v1", "PersistentVolumeClaim", owner_keys("DataVolume"), only_served=True)
    index = SourceRefIndex()
    data_sources = Watch(CDI_API_VERSION, "DataSource", index.users_of)
    return [ControllerSpec("datavolume-pvc-clone-controller", CDI_API_VERSION, "DataVolume",
                           CloneDataVolumeReconciler(cluster, clock, "PersistentVolumeClaim", authorization, index,
                                                     scraper=scraper, stall_timeout=stall_timeout, events=events),
                           watches=[claims, data_sources], predicate=may_clone),
            ControllerSpec("datavolume-snapshot-clone-controller", CDI_API_VERSION, "DataVolume",
                           CloneDataVolumeReconciler(cluster, clock, SNAPSHOT_SOURCE, authorization, index,
                                                     scraper=scraper, stall_timeout=stall_timeout, events=events),
                           watches=[claims, data_sources], predicate=may_clone)]
