"""The DataVolume controllers: for a DataVolume whose source this controller's `DataVolumeKind` handles
(import: http, s3, gcs, registry, blank, imageio, vddk; upload: upload) it renders and creates the PVC
with the operation's annotations — the PVC-level import or upload controller then runs the worker pod —
and derives the DataVolume's status, events and progress from the PVC. Keyed by DataVolume; watches the
PVCs it owns and requeues every 2 s while the importer runs (ImportInProgress) so that progress stays
live. Default instance type labels that reach the PVC (a registry image's) are copied onto the DataVolume.

Ours: while an importer or upload server runs, its byte counters become bytes/rate/ETA annotations on the
DataVolume and, when they stop moving for the stall timeout, a `Stalled` condition with an event
(`cdi.controllers.datavolume.transfer` applies what `cdi.controllers.progresswatch` decides). Uploads are
polled too (every 10 s until the first byte, then every 2 s); their `status.progress` stays N/A as upstream's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from cdi.api import DataVolume, ManifestError, parse_object
from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, Forbidden, Invalid, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import upload_resource_name
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.config_view import ConfigView
from cdi.controllers.datavolume.claim import (
    import_source_kind,
    may_import,
    may_upload,
    new_claim,
    source_annotations,
    upload_annotations,
)
from cdi.controllers.datavolume.render import RenderError, StorageView, render_pvc_spec
from cdi.controllers.datavolume.status import IMPORT, UPLOAD, Observed, Operation, dv_status
from cdi.controllers.datavolume.transfer import Transfer, TransferWatch
from cdi.controllers.meta import annotations_of, is_controlled_by, is_deleting, labels_of, name_of, timestamp, uid_of
from cdi.controllers.progress import ProgressPage, ProgressScraper, TransferScraper
from cdi.controllers.progresswatch import DEFAULT_STALL_TIMEOUT, StallPlan, Waiting
from cdi.controllers.workerpod import add_missing_labels
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 2.0
IDLE_INTERVAL = 10.0  # an upload server waiting for its user's first byte


@dataclass(frozen=True)
class DataVolumeKind:
    """What one DataVolume controller handles and how its PVC and status differ."""

    name: str
    handles: Callable[[DataVolume], bool]
    claim_annotations: Callable[[DataVolume], dict[str, str]]
    operation: Operation


IMPORT_KIND = DataVolumeKind("datavolume-import-controller", lambda dv: import_source_kind(dv) is not None,
                             source_annotations, IMPORT)
UPLOAD_KIND = DataVolumeKind("datavolume-upload-controller", lambda dv: bool(upload_annotations(dv)),
                             upload_annotations, UPLOAD)


class DataVolumeReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, kind: DataVolumeKind,
                 scraper: ProgressScraper | None = None, *,
                 stall_timeout: timedelta = DEFAULT_STALL_TIMEOUT, events: EventSink | None = None) -> None:
        self._cluster = cluster
        self._clock = clock
        self._events = events or DirectEvents(cluster, clock.now)
        self._kind = kind
        self._scraper = scraper
        self._transfers = TransferWatch(cluster, clock, stall_timeout)

    async def reconcile(self, key: Key) -> Result:
        try:
            doc = await self._cluster.get(CDI_API_VERSION, "DataVolume", key.name, key.namespace)
        except NotFound:
            self._transfers.forget(key.namespace, key.name)
            return DONE
        try:
            dv = parse_object(doc)
        except ManifestError as e:
            log.warning("DataVolume %s is not valid: %s", key, "; ".join(e.messages))
            return DONE
        assert isinstance(dv, DataVolume)
        if not self._kind.handles(dv) or is_deleting(doc):
            self._transfers.forget(key.namespace, key.name)
            return DONE
        pvc, problem, created = await self._claim(dv, doc)
        if created:
            # The claim's own ADDED event wakes this DataVolume again within a moment and writes the status
            # the claim has by then: written now, Pending would often be overwritten at once (PVCBound) by
            # a second status write. A claim that stays unbound shows Pending after that one round trip.
            return DONE
        if pvc is not None:
            await add_missing_labels(self._cluster, doc, {k: v for k, v in labels_of(pvc).items()
                                                          if k in ann.DEFAULT_INSTANCETYPE_LABELS})
        storage_class = await self._storage_class(pvc)
        page = await self._read(doc, pvc)
        stall = await self._watch(doc, pvc, page)
        wffc = bool(storage_class) and (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        plan = dv_status(Observed(doc, pvc, wffc, page.percent if page else None, problem,
                                  timestamp(self._clock.now()), stall), self._kind.operation)
        if doc.get("status") != plan.status:
            await self._cluster.patch_status(CDI_API_VERSION, "DataVolume", key.name, {"status": plan.status},
                                             key.namespace)
        for type_, reason, message in plan.events:
            await self._events.record(doc, type_, reason, message, component=self._kind.name)
        if problem:
            return Result(requeue_after=5.0)
        # Only the progress needs polling: every other change of phase comes from the PVC, which wakes us.
        # (Requeuing in every unfinished phase cost 1,000 in-flight DataVolumes 500 reconciles a second.)
        # An upload whose user has not started is looked at less often: it has nothing to show yet.
        if self._scraper is None or plan.status["phase"] != self._kind.operation.in_flight[-1]:
            return DONE
        idle = not self._kind.operation.reports_progress and not (page and page.done)
        return Result(requeue_after=IDLE_INTERVAL if idle else PROGRESS_INTERVAL)

    async def _claim(self, dv: DataVolume, doc: Object) -> tuple[Object | None, tuple[str, str] | None, bool]:
        """The DataVolume's claim (made now if missing), the problem that kept it from being made, and
        whether this call created it."""
        meta = doc["metadata"]
        try:
            pvc = await self._cluster.get("v1", "PersistentVolumeClaim", meta["name"], meta["namespace"])
        except NotFound:
            pvc = None
        if pvc is not None:
            if not is_controlled_by(pvc, doc) and annotations_of(pvc).get(ann.ANN_POPULATED_FOR) != meta["name"]:
                return None, ("ErrResourceExists",
                              f'Resource "{meta["name"]}" already exists and is not managed by DataVolume'), False
            return pvc, None, False
        if (doc.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None, None, False  # the claim was deleted after the import ended: do not import again
        try:
            spec = render_pvc_spec(dv, await self._storage_view())
        except RenderError as e:
            return None, (e.reason, e.message), False
        config = ConfigView.of(await self._get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME))
        try:
            pvc = await self._cluster.create(new_claim(dv, doc, spec, config, self._kind.claim_annotations(dv)))
        except (Invalid, Forbidden) as e:
            # The API server refuses the claim as rendered (an impossible size stored before admission
            # checked it, say): retrying cannot help, so say why instead of looping.
            return None, ("ErrClaimNotValid", f"the PVC for this DataVolume was refused: {e.message}"), False
        except AlreadyExists:
            pvc = await self._cluster.get("v1", "PersistentVolumeClaim", meta["name"], meta["namespace"])
            return pvc, None, False
        log.info("created PVC %s/%s for DataVolume", meta["namespace"], meta["name"])
        return pvc, None, True

    async def _storage_view(self) -> StorageView:
        classes = (await self._cluster.list("storage.k8s.io/v1", "StorageClass")).items
        profiles = {name_of(p): p for p in (await self._cluster.list(CDI_API_VERSION, "StorageProfile")).items}
        return StorageView(classes, profiles, ConfigView.of(await self._get(CDI_API_VERSION, "CDIConfig", CONFIG_NAME)))

    async def _storage_class(self, pvc: Object | None) -> Object | None:
        class_name = ((pvc or {}).get("spec") or {}).get("storageClassName")
        return await self._get("storage.k8s.io/v1", "StorageClass", class_name) if class_name else None

    def _pod_name(self, pvc: Object) -> str | None:
        notes = annotations_of(pvc)
        if self._kind.operation.reports_progress:
            return notes.get(ann.ANN_IMPORT_POD)
        return notes.get(ann.ANN_UPLOAD_POD) or upload_resource_name(name_of(pvc))

    async def _read(self, doc: Object, pvc: Object | None) -> ProgressPage | None:
        if self._scraper is None or pvc is None or annotations_of(pvc).get(ann.ANN_POD_PHASE) != "Running":
            return None
        pod_name = self._pod_name(pvc)
        pod = await self._get("v1", "Pod", pod_name, doc["metadata"]["namespace"]) if pod_name else None
        pod_ip = ((pod or {}).get("status") or {}).get("podIP")
        if not pod_ip:
            return None
        if isinstance(self._scraper, TransferScraper):
            return await self._scraper.read(str(pod_ip), uid_of(doc))
        percent = await self._scraper.scrape(str(pod_ip), uid_of(doc))
        return ProgressPage(percent, None, None) if percent is not None else None

    async def _watch(self, doc: Object, pvc: Object | None, page: ProgressPage | None) -> StallPlan:
        """Bytes, rate and ETA annotations and the Stalled condition (ours, `progresswatch`)."""
        pod_phase = annotations_of(pvc).get(ann.ANN_POD_PHASE) if pvc is not None else None
        if self._scraper is None or pod_phase != "Running":
            return await self._transfers.ended(doc, succeeded=pod_phase == "Succeeded")
        pod = f"pod/{self._pod_name(pvc or {})}"
        namespace = doc["metadata"]["namespace"]
        if self._kind.operation.reports_progress:
            transfer = Transfer(page, Waiting.NO, f"the source may be unreachable: see `cdi logs {pod} -n {namespace}`")
        else:
            transfer = Transfer(page, Waiting.FOR_CLIENT, "the upload client may have stopped: resume the upload, "
                                                          f"or see `cdi logs {pod} -n {namespace}`")
        return await self._transfers.running(doc, transfer)

    async def _get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object | None:
        try:
            return await self._cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return None


def controllers(cluster: Cluster, clock: Clock, scraper: ProgressScraper, *,
                stall_timeout: timedelta = DEFAULT_STALL_TIMEOUT,
                events: EventSink | None = None) -> list[ControllerSpec]:
    claims = Watch("v1", "PersistentVolumeClaim", owner_keys("DataVolume"), only_served=True)
    return [ControllerSpec(IMPORT_KIND.name, CDI_API_VERSION, "DataVolume",
                           DataVolumeReconciler(cluster, clock, IMPORT_KIND, scraper, stall_timeout=stall_timeout,
                                                events=events),
                           watches=[claims], workers=3, predicate=may_import),
            ControllerSpec(UPLOAD_KIND.name, CDI_API_VERSION, "DataVolume",
                           DataVolumeReconciler(cluster, clock, UPLOAD_KIND, scraper, stall_timeout=stall_timeout,
                                                events=events),
                           watches=[claims], workers=2, predicate=may_upload)]
