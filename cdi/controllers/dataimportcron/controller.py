"""The DataImportCron reconciler: observe → poll when due → plan → apply; cleanup on deletion.

Keyed by DataImportCron (upstream's `dataimportcron-controller`). Each reconcile:

1. a cron that is gone or being deleted is cleaned up (its `retentionPolicy: None` objects — DataSource,
   DataVolumes, claims, snapshots labelled `dataImportCron=<name>` and `dataImportCron.cleanup=true` —
   are deleted) and the finalizer `cdi.kubevirt.io/dataImportCronFinalizer` is removed;
2. a managed DataSource that another existing cron manages stops it (`ErrDataSourceAlreadyManaged`);
3. the finalizer is added; when `nextCronTime` is unset or reached, the source is polled (a
   `SourcePoller` per source kind, injected; a PVC source's digest is its claim's UID);
4. `observe` → `plan` (pure) → the plan's actions, then the cron's annotations and status in one merge
   patch guarded by the resourceVersion it was planned from (a stale read retries), then its events.

Woken by its own changes, by DataVolumes, claims and DataSources labelled with a cron's name, by the
StorageProfile of a cron's storage class (an index filled as crons are reconciled), by StorageClass
changes (a new default class), and by the requeue the plan asks for (the next poll; snapshots while
not ready).

With a `ControlPlaneMetrics`, each reconcile also publishes `kubevirt_cdi_dataimportcron_outdated` from the
status it planned (`outdated`), and a deleted cron's series is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from typing import Final

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.dataimportcron.actions import Action, Create, Delete, Patch
from cdi.controllers.dataimportcron.observe import SNAPSHOT_API, get_or_none, observe
from cdi.controllers.dataimportcron.observed import PollOutcome
from cdi.controllers.dataimportcron.outdated import outdated_sample
from cdi.controllers.dataimportcron.plan import Plan, plan, poll_due
from cdi.controllers.dataimportcron.pollers import PollError, SourcePoller, default_pollers
from cdi.controllers.dataimportcron.targets import poll_target, pvc_digest, template_source
from cdi.controllers.meta import annotations_of, is_deleting, labels_of, meta, name_of, namespace_of
from cdi.monitoring import ControlPlaneMetrics
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

log = logging.getLogger(__name__)

COMPONENT: Final = "dataimportcron-controller"
FINALIZER: Final = "cdi.kubevirt.io/dataImportCronFinalizer"
ALREADY_MANAGED: Final = "ErrDataSourceAlreadyManaged"
KIND: Final = "DataImportCron"
_CLEANUP_KINDS = ((CDI_API_VERSION, "DataSource"), (CDI_API_VERSION, "DataVolume"), ("v1", "PersistentVolumeClaim"),
                  (SNAPSHOT_API, "VolumeSnapshot"))


class DataImportCronReconciler:
    def __init__(self, cluster: Cluster, clock: Clock, pollers: Mapping[str, SourcePoller] | None = None,
                 zone: tzinfo = UTC, metrics: ControlPlaneMetrics | None = None,
                 events: EventSink | None = None) -> None:
        self._cluster, self._clock, self._zone = cluster, clock, zone
        self._events = events or DirectEvents(cluster, clock.now)
        self._metrics = metrics  # None: publish nothing (tests that do not look at metrics)
        self._pollers = dict(pollers) if pollers is not None else default_pollers()
        self.storage_classes: dict[Key, str] = {}  # cron → its storage class, for the StorageProfile watch

    async def reconcile(self, key: Key) -> Result:
        doc = await get_or_none(self._cluster, CDI_API_VERSION, KIND, key.name, key.namespace)
        if doc is None or is_deleting(doc):
            self.storage_classes.pop(key, None)
            if self._metrics is not None:  # upstream drops the series when the cron goes
                self._metrics.forget_cron(key.namespace, key.name)
            await self._cleanup(key)
            if doc is not None and FINALIZER in (meta(doc).get("finalizers") or []):
                await self._set_finalizers(doc, [f for f in meta(doc)["finalizers"] if f != FINALIZER])
            return DONE
        if await self._managed_elsewhere(doc):
            return DONE
        if FINALIZER not in (meta(doc).get("finalizers") or []):
            doc = await self._set_finalizers(doc, [*(meta(doc).get("finalizers") or []), FINALIZER])
        now = self._clock.now()
        outcome = await self._poll(doc) if poll_due(doc, now) else None
        observed = await observe(self._cluster, doc, now, outcome, self._zone)
        if observed.storage_class:
            self.storage_classes[key] = observed.storage_class
        todo = plan(observed)
        await self._apply(doc, todo)
        self._publish(doc, todo)
        return Result(todo.requeue_after) if todo.requeue_after is not None else DONE

    async def _poll(self, doc: Object) -> PollOutcome:
        kind, source = template_source(doc)
        try:
            if kind == "pvc":
                return PollOutcome(await pvc_digest(self._cluster, doc, source))
            target = await poll_target(self._cluster, doc)
            return PollOutcome(await self._pollers[target.kind].poll(target))
        except PollError as e:
            log.info("DataImportCron %s/%s: polling failed: %s", namespace_of(doc), name_of(doc), e.message)
            return PollOutcome(None, e.reason, e.message, e.retryable)

    async def _apply(self, doc: Object, todo: Plan) -> None:
        for action in todo.actions:
            await self._act(namespace_of(doc), action)
        # Guarded by the resourceVersion the plan was made from: a stale read fails with Conflict and retries.
        metadata: dict[str, object] = {"resourceVersion": meta(doc)["resourceVersion"]}
        patch: dict[str, object] = {"metadata": metadata}
        if todo.annotations:
            metadata["annotations"] = todo.annotations
        if todo.status != (doc.get("status") or {}):
            patch["status"] = todo.status
        if todo.annotations or "status" in patch:
            doc = await self._cluster.patch(CDI_API_VERSION, KIND, name_of(doc), patch, namespace_of(doc))
        for event in todo.events:
            await self._events.record(doc, event.type, event.reason, event.message, component=COMPONENT)

    def _publish(self, doc: Object, todo: Plan) -> None:
        """The outdated gauge from what was just written (after `_apply`, so a Conflict publishes nothing)."""
        if self._metrics is None:
            return
        sample = outdated_sample(doc, todo.status, {**annotations_of(doc), **todo.annotations})
        if sample is not None:
            self._metrics.set_cron_outdated(namespace_of(doc), name_of(doc), outdated=sample.outdated,
                                            pending=sample.pending)

    async def _act(self, namespace: str, action: Action) -> None:
        try:
            if isinstance(action, Create):
                await self._cluster.create(action.body)
            elif isinstance(action, Patch):
                await self._cluster.patch(action.api_version, action.kind, action.name, action.patch, namespace)
            elif isinstance(action, Delete):
                await self._delete(namespace, action)
        except (AlreadyExists, NotFound):
            pass  # already done (or undone) by an earlier reconcile or by someone else

    async def _delete(self, namespace: str, action: Delete) -> None:
        if action.unlabel:
            await self._cluster.patch(action.api_version, action.kind, action.name,
                                      {"metadata": {"labels": {ann.LABEL_DATA_IMPORT_CRON: ""}}}, namespace)
        try:
            await self._cluster.delete(action.api_version, action.kind, action.name, namespace)
        except NotFound:
            if not action.or_claim:
                raise
            await self._cluster.delete("v1", "PersistentVolumeClaim", action.name, namespace)

    async def _set_finalizers(self, doc: Object, finalizers: list[str]) -> Object:
        return await self._cluster.patch(CDI_API_VERSION, KIND, name_of(doc), {"metadata": {
            "finalizers": finalizers, "resourceVersion": meta(doc)["resourceVersion"]}}, namespace_of(doc))

    async def _cleanup(self, key: Key) -> None:
        selector = {ann.LABEL_DATA_IMPORT_CRON: key.name, ann.LABEL_DATA_IMPORT_CRON_CLEANUP: "true"}
        for api_version, kind in _CLEANUP_KINDS:
            if kind == "VolumeSnapshot" and not await self._cluster.served(api_version, kind):
                continue
            for item in (await self._cluster.list(api_version, kind, key.namespace, selector)).items:
                try:
                    await self._cluster.delete(api_version, kind, name_of(item), key.namespace)
                except NotFound:
                    pass

    async def _managed_elsewhere(self, doc: Object) -> bool:
        source_name = str((doc.get("spec") or {}).get("managedDataSource") or "")
        source = await get_or_none(self._cluster, CDI_API_VERSION, "DataSource", source_name, namespace_of(doc))
        owner = labels_of(source or {}).get(ann.LABEL_DATA_IMPORT_CRON)
        if not owner or owner == name_of(doc):
            return False
        other = await get_or_none(self._cluster, CDI_API_VERSION, KIND, owner, namespace_of(doc))
        if other is None or (other.get("spec") or {}).get("managedDataSource") != source_name:
            return False
        await self._events.record(doc, "Warning", ALREADY_MANAGED,
                                  f"DataSource {source_name} is already managed by DataImportCron {owner}",
                                  component=COMPONENT)
        return True


def _labelled(obj: Object) -> Iterable[Key]:
    cron = labels_of(obj).get(ann.LABEL_DATA_IMPORT_CRON)
    return [Key(namespace_of(obj), cron)] if cron else []


def controllers(cluster: Cluster, clock: Clock, pollers: Mapping[str, SourcePoller] | None = None,
                zone: tzinfo = UTC, metrics: ControlPlaneMetrics | None = None,
                events: EventSink | None = None) -> list[ControllerSpec]:
    reconciler = DataImportCronReconciler(cluster, clock, pollers, zone, metrics, events)

    def profile_to_crons(profile: Object) -> Iterable[Key]:
        return [key for key, storage_class in list(reconciler.storage_classes.items())
                if storage_class == name_of(profile)]

    watches = [Watch(CDI_API_VERSION, "DataVolume", _labelled), Watch("v1", "PersistentVolumeClaim", _labelled),
               Watch(CDI_API_VERSION, "DataSource", _labelled),
               Watch(CDI_API_VERSION, "StorageProfile", profile_to_crons),
               # A default-class change may move crons without an explicit class (rare: wake every cron).
               Watch("storage.k8s.io/v1", "StorageClass", lambda _: list(reconciler.storage_classes))]
    return [ControllerSpec(COMPONENT, CDI_API_VERSION, KIND, reconciler, watches=watches, workers=3)]
