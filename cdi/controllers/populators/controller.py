"""The import and upload populators' reconciler: observe → `plan.plan` → apply, keyed by target claim.

For a claim whose `dataSourceRef` names a VolumeImportSource or VolumeUploadSource (`sources.populator_of`)
it reads the source object, the claim's StorageClass, PVC′ (`prime.prime_name`), PVC′'s volume, the
CDIConfig and — for an import whose worker runs — the importer's progress metric (the importer labels it
with the target's UID: PVC′'s single owner is the target, `importpod.controller`); then applies the plan.
The PVC-level import and upload controllers do the work on PVC′; the binder (Kubernetes' PV controller or
the embedded provisioner) binds the target to the handed-over volume. Changes of PVC′ wake its target
through PVC′'s owner reference; progress is polled every 2 s while an import runs.
"""

from __future__ import annotations

import logging

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.meta import annotations_of, name_of, namespace_of, uid_of
from cdi.controllers.populators import prime as pvc_prime
from cdi.controllers.populators.plan import (
    Action,
    CreatePrime,
    DeletePrime,
    Event,
    Observed,
    PatchTarget,
    PatchVolume,
    plan,
)
from cdi.controllers.populators.sources import populator_of
from cdi.controllers.progress import ProgressScraper
from cdi.controllers.workerpod import config_view, delete_quietly
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch, owner_keys

log = logging.getLogger(__name__)
COMPONENT = "cdi-populator"
_PVC = ("v1", "PersistentVolumeClaim")


class PopulatorReconciler:
    """Populates claims naming CDI's import or upload source; `scraper` None: no import progress."""

    def __init__(self, cluster: Cluster, clock: Clock, scraper: ProgressScraper | None = None,
                 events: EventSink | None = None) -> None:
        self._cluster, self._clock, self._scraper = cluster, clock, scraper
        self._recorder = events or DirectEvents(cluster, clock.now)

    async def reconcile(self, key: Key) -> Result:
        seen = await self.observe(key)
        if seen is None:
            return DONE
        decided = plan(seen)
        for action in decided.actions:
            await self._apply(seen.target, action)
        return Result(requeue_after=decided.requeue_after)

    async def observe(self, key: Key) -> Observed | None:
        target = await self._get(*_PVC, key.name, key.namespace)
        kind = populator_of(target) if target is not None else None
        if target is None or kind is None:
            return None
        ref = (target.get("spec") or {}).get("dataSourceRef") or {}
        source = await self._get(CDI_API_VERSION, kind.kind, str(ref.get("name")), key.namespace)
        class_name = (target.get("spec") or {}).get("storageClassName")
        storage_class = await self._get("storage.k8s.io/v1", "StorageClass", class_name) if class_name else None
        prime = await self._get(*_PVC, pvc_prime.prime_name(target), key.namespace)
        volume_name = pvc_prime.volume_name(prime)
        volume = await self._get("v1", "PersistentVolume", volume_name) if volume_name else None
        worker = await self._worker(prime) if prime is not None and kind.reports_progress else None
        prime_events = await self._events(prime) if prime is not None and not pvc_prime.volume_name(target) else ()
        return Observed(target, kind, source, storage_class, prime, volume, await config_view(self._cluster),
                        worker_running=worker is not None, progress=await self._progress(target, worker),
                        prime_events=prime_events, target_events=await self._events(target) if prime_events else ())

    async def _events(self, claim: Object) -> tuple[pvc_prime.EventLine, ...]:
        """The claim's events, oldest first (a field selector: served by the API server, not a cache)."""
        selector = f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name_of(claim)}"
        found = await self._cluster.list("v1", "Event", namespace_of(claim), field_selector=selector)
        ordered = sorted(found.items, key=lambda e: str(e.get("firstTimestamp") or e.get("eventTime") or ""))
        return tuple((str(e.get("type")), str(e.get("reason")), str(e.get("message"))) for e in ordered
                     if (e.get("involvedObject") or {}).get("uid") in (None, uid_of(claim)))

    async def _worker(self, prime: Object) -> Object | None:
        pod_name = annotations_of(prime).get(ann.ANN_IMPORT_POD)
        return await self._get("v1", "Pod", pod_name, namespace_of(prime)) if pod_name else None

    async def _progress(self, target: Object, worker: Object | None) -> float | None:
        status = (worker or {}).get("status") or {}
        if self._scraper is None or status.get("phase") != "Running" or not status.get("podIP"):
            return None
        return await self._scraper.scrape(str(status["podIP"]), uid_of(target))

    async def _apply(self, target: Object, action: Action) -> None:
        namespace = namespace_of(target)
        if isinstance(action, CreatePrime):
            try:
                await self._cluster.create(action.claim)
            except AlreadyExists:
                return  # an earlier run made it: the event was recorded then
            log.info("created PVC′ %s/%s for %s", namespace, name_of(action.claim), name_of(target))
        elif isinstance(action, PatchTarget):
            metadata: dict[str, object] = {"annotations": action.annotations}
            if action.labels:
                metadata["labels"] = action.labels
            await self._cluster.patch(*_PVC, name_of(target), {"metadata": metadata}, namespace)
        elif isinstance(action, PatchVolume):
            await self._cluster.patch("v1", "PersistentVolume", action.volume, action.patch)
            log.info("handed volume %s to %s/%s", action.volume, namespace, name_of(target))
        elif isinstance(action, DeletePrime):
            await delete_quietly(self._cluster, *_PVC, action.name, namespace)
        elif isinstance(action, Event):
            await self._recorder.record(target, action.type, action.reason, action.message, component=COMPONENT)

    async def _get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object | None:
        try:
            return await self._cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return None


def _target_of_prime(obj: Object) -> list[Key]:
    return list(owner_keys("PersistentVolumeClaim")(obj)) if pvc_prime.is_prime_of_ours(obj) else []


def controllers(cluster: Cluster, clock: Clock, scraper: ProgressScraper | None = None,
                events: EventSink | None = None) -> list[ControllerSpec]:
    primes = Watch(*_PVC, _target_of_prime)
    return [ControllerSpec("volume-populators", *_PVC, PopulatorReconciler(cluster, clock, scraper, events),
                           predicate=lambda claim: populator_of(claim) is not None,
                           watches=[primes], workers=2)]
