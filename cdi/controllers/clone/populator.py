"""The clone populator: fills a PersistentVolumeClaim whose `dataSourceRef` names a VolumeCloneSource.

Keyed by claim. For a target that is not yet populated it (1) finds the VolumeCloneSource (in the
namespace `cdi.kubevirt.io/dataSourceNamespace` names; a cross-namespace clone needs the claim's
extended clone token, `cdi.controllers.clone.authorization`), (2) waits while the target waits for
its first consumer, (3) chooses the strategy once (`strategy.choose_strategy`) and records it on the
claim — `cloneType`, `cloneFallbackReason` with upstream's Warning event, `clonePhase=Pending` and the
`cdi.kubevirt.io/clonePopulator` finalizer — then (4) walks the plan's phases (`phases`), recording
the phase that is running in `clonePhase`, and (5) when all are done marks the claim `Succeeded`
with progress 100.0%, deletes every temporary object (label `OwnedByUID`) and drops the finalizer.
A deleted target gets the same clean-up. Phase failures set `clonePhase=Error` and `cloneError`,
record a `CloneFailed` Warning and are retried; as upstream, the DataVolume is not failed by them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from cdi.api.meta import CDI_API_VERSION, CDI_GROUP
from cdi.cluster.errors import NotFound
from cdi.cluster.events import DirectEvents, EventSink
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.annotations import ClonePhase
from cdi.controllers.clone.authorization import CloneAuthorization
from cdi.controllers.clone.facts import SNAPSHOT_API, gather_inputs, get_or_none
from cdi.controllers.clone.phases import (
    RUNNERS,
    CloneFailure,
    CloneJob,
    Pending,
    host_clone_results,
    is_temporary,
    working_object,
)
from cdi.controllers.clone.plans import SNAPSHOT_SOURCE, NoPlan, phases_for
from cdi.controllers.clone.strategy import Chosen, Refused, Strategy, Wait, choose_strategy
from cdi.controllers.meta import annotations_of, is_deleting, name_of, namespace_of, uid_of
from cdi.controllers.populators.prime import forwarded_events
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch

log = logging.getLogger(__name__)
COMPONENT = "clone-populator"
CLONE_SOURCE_KIND = "VolumeCloneSource"
ANN_SNAPSHOT_CLASS = ann.ANN_CLONE_SNAPSHOT_CLASS

def clone_source_ref(claim: Object) -> dict[str, Any] | None:
    """The claim's `dataSourceRef` when it names a VolumeCloneSource, else None."""
    ref = (claim.get("spec") or {}).get("dataSourceRef") or {}
    if ref.get("kind") == CLONE_SOURCE_KIND and ref.get("apiGroup") == CDI_GROUP:
        return dict(ref)
    return None


class ClonePopulator:
    def __init__(self, cluster: Cluster, clock: Clock, authorization: CloneAuthorization,
                 events: EventSink | None = None) -> None:
        self._cluster = cluster
        self._clock = clock
        self._events = events or DirectEvents(cluster, clock.now)
        self._authorization = authorization

    async def reconcile(self, key: Key) -> Result:
        target = await get_or_none(self._cluster, "v1", "PersistentVolumeClaim", key.name, key.namespace)
        if target is None or (ref := clone_source_ref(target)) is None:
            return DONE
        notes = annotations_of(target)
        source_namespace = notes.get(ann.ANN_DATA_SOURCE_NAMESPACE) or key.namespace
        if is_deleting(target) or notes.get(ann.ANN_CLONE_PHASE) == ClonePhase.SUCCEEDED:
            await self._finish(target, source_namespace)
            return DONE
        clone_source = await get_or_none(self._cluster, CDI_API_VERSION, CLONE_SOURCE_KIND, str(ref.get("name")),
                                         source_namespace)
        if clone_source is None:
            return Result(requeue_after=5.0)  # the DataVolume controller creates it right after the claim
        source = ((clone_source.get("spec") or {}).get("source") or {})
        problem = self._authorization.check_claim(target, str(source.get("kind") or "PersistentVolumeClaim"),
                                                  source_namespace, str(source.get("name")))
        if problem:
            await self._error(target, problem)
            return Result(requeue_after=5.0)  # the DataVolume controller adds the claim's token right after
        if not await self._claim_ready(target):
            return DONE  # waits for its first consumer; the claim's selected-node annotation wakes us
        if ann.ANN_CLONE_TYPE not in notes:
            chosen = await self._choose(target, source, source_namespace)
            if isinstance(chosen, Result):
                return chosen
            target = chosen
        return await self._run(target, source, source_namespace, clone_source)

    async def _claim_ready(self, target: Object) -> bool:
        notes = annotations_of(target)
        if notes.get(ann.ANN_SELECTED_NODE) or notes.get(ann.ANN_IMMEDIATE_BINDING) == "true":
            return True
        class_name = (target.get("spec") or {}).get("storageClassName")
        storage_class = await get_or_none(self._cluster, "storage.k8s.io/v1", "StorageClass", class_name) \
            if class_name else None
        return (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer"

    async def _source_object(self, source: dict[str, Any], namespace: str) -> Object | None:
        if source.get("kind") == SNAPSHOT_SOURCE:
            if not await self._cluster.served(SNAPSHOT_API, "VolumeSnapshot"):
                return None
            return await get_or_none(self._cluster, SNAPSHOT_API, "VolumeSnapshot", str(source.get("name")), namespace)
        return await get_or_none(self._cluster, "v1", "PersistentVolumeClaim", str(source.get("name")), namespace)

    async def _choose(self, target: Object, source: dict[str, Any], source_namespace: str) -> Object | Result:
        source_object = await self._source_object(source, source_namespace)
        kind_word = "snapshot" if source.get("kind") == SNAPSHOT_SOURCE else "pvc"
        if source_object is None:
            await self._event(target, "Warning", "CloneWithoutSource",
                              f"The source {kind_word} {source.get('name')} doesn't exist")
            return Result(requeue_after=5.0)
        choice = choose_strategy(await gather_inputs(self._cluster, target, source_object,
                                                     str(source.get("kind") or "PersistentVolumeClaim")))
        if isinstance(choice, Wait):
            return Result(requeue_after=5.0)
        # State first, events after: a controller that dies in between has lost an event, not the choice.
        if isinstance(choice, Refused):
            await self._error(target, choice.message, reason=choice.reason)
            recorded = target
        else:
            recorded = await self._record(target, choice)
        for note in choice.notes:
            await self._event(target, note.type, note.reason, note.message)
        return Result(requeue_after=30.0) if isinstance(choice, Refused) else recorded

    async def _record(self, target: Object, choice: Chosen) -> Object:
        wanted: dict[str, Any] = {ann.ANN_CLONE_TYPE: choice.strategy.value, ann.ANN_CLONE_PHASE: ClonePhase.PENDING}
        if choice.fallback is not None:
            wanted[ann.ANN_CLONE_FALLBACK_REASON] = choice.fallback.message
        if choice.snapshot_class:
            wanted[ANN_SNAPSHOT_CLASS] = choice.snapshot_class
        finalizers = list(target["metadata"].get("finalizers") or [])
        if ann.FINALIZER_CLONE_POPULATOR not in finalizers:
            finalizers.append(ann.FINALIZER_CLONE_POPULATOR)
        updated = await self._cluster.patch("v1", "PersistentVolumeClaim", name_of(target),
                                            {"metadata": {"annotations": wanted, "finalizers": finalizers}},
                                            namespace_of(target))
        if choice.fallback is not None:
            await self._event(target, "Warning", choice.fallback.value, choice.fallback.message)
        log.info("clone into %s/%s: strategy %s", namespace_of(target), name_of(target), choice.strategy.value)
        return updated

    async def _run(self, target: Object, source: dict[str, Any], source_namespace: str,
                   clone_source: Object) -> Result:
        notes = annotations_of(target)
        strategy = Strategy(notes[ann.ANN_CLONE_TYPE])
        kind = str(source.get("kind") or "PersistentVolumeClaim")
        job = CloneJob(target, kind, source_namespace, str(source.get("name")), strategy,
                       notes.get(ANN_SNAPSHOT_CLASS),
                       bool((clone_source.get("spec") or {}).get("preallocation"))
                       or notes.get(ann.ANN_PREALLOCATION_REQUESTED) == "true")
        try:
            phases = phases_for(kind, strategy)
        except NoPlan as e:
            await self._error(target, str(e))
            return Result(requeue_after=30.0)
        # Rebind, the last phase of every plan, is what gives the target its volume: once it has one,
        # the earlier phases' objects may already be gone (the temporary claim is Lost), so do not ask them.
        bound = bool((target.get("spec") or {}).get("volumeName"))
        for phase in () if bound else phases:
            try:
                outcome = await RUNNERS[phase](self._cluster, job)
            except CloneFailure as e:
                await self._error(target, str(e))
                return Result(requeue_after=10.0)
            if outcome is not None:
                await self._show(target, phase, outcome)
                await self._forward_warnings(target, job, phase)
                return Result(requeue_after=outcome.requeue_after)
        results = await host_clone_results(self._cluster, job) if strategy == Strategy.COPY else {}
        await self._annotate(target, {**results, ann.ANN_CLONE_PHASE: ClonePhase.SUCCEEDED,
                                      ann.ANN_POPULATOR_PROGRESS: "100.0%", ann.ANN_CLONE_ERROR: None})
        await self._finish(target, source_namespace)
        return DONE

    async def _show(self, target: Object, phase: ClonePhase, outcome: Pending) -> None:
        wanted: dict[str, str | None] = {ann.ANN_CLONE_PHASE: phase.value, ann.ANN_CLONE_ERROR: None,
                                         **outcome.mirrored}
        if outcome.progress:
            wanted[ann.ANN_POPULATOR_PROGRESS] = outcome.progress
        await self._annotate(target, wanted)

    async def _forward_warnings(self, target: Object, job: CloneJob, phase: ClonePhase) -> None:
        """The running phase's temporary object's Warning events, repeated once on the target prefixed with its
        name (upstream forwards them too): a clone that waits says why where the user looks."""
        kind, name = working_object(job, phase)
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = (await self._cluster.list("v1", "Event", job.source_namespace, field_selector=selector)).items
        warnings = tuple((str(e.get("type")), str(e.get("reason")), str(e.get("message"))) for e in found
                         if e.get("type") == "Warning")
        if not warnings:
            return
        mine = f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name_of(target)}"
        seen = tuple((str(e.get("type")), str(e.get("reason")), str(e.get("message"))) for e in
                     (await self._cluster.list("v1", "Event", namespace_of(target), field_selector=mine)).items)
        for type_, reason, message in forwarded_events({"metadata": {"name": name}}, warnings, seen):
            await self._event(target, type_, reason, message)

    async def _annotate(self, target: Object, wanted: dict[str, str | None]) -> None:
        notes = annotations_of(target)
        changed = {k: v for k, v in wanted.items() if notes.get(k) != v and not (v is None and k not in notes)}
        if changed:
            await self._cluster.patch("v1", "PersistentVolumeClaim", name_of(target),
                                      {"metadata": {"annotations": changed}}, namespace_of(target))

    async def _error(self, target: Object, message: str, *, reason: str = "CloneFailed") -> None:
        new = annotations_of(target).get(ann.ANN_CLONE_ERROR) != message
        await self._annotate(target, {ann.ANN_CLONE_PHASE: ClonePhase.ERROR, ann.ANN_CLONE_ERROR: message})
        if new:
            await self._event(target, "Warning", reason, message)

    async def _finish(self, target: Object, source_namespace: str) -> None:
        """Delete every temporary object of this clone, then let the claim go."""
        uid = uid_of(target)
        for api_version, kind in self._temporary_kinds():
            if not await self._cluster.served(api_version, kind):
                continue
            found = await self._cluster.list(api_version, kind, namespace=source_namespace,
                                             label_selector={ann.LABEL_OWNED_BY_UID: uid})
            for obj in found.items:
                if is_temporary(obj) and not is_deleting(obj):
                    await self._delete(api_version, kind, name_of(obj), source_namespace)
        finalizers = list(target["metadata"].get("finalizers") or [])
        if ann.FINALIZER_CLONE_POPULATOR in finalizers:
            finalizers.remove(ann.FINALIZER_CLONE_POPULATOR)
            await self._cluster.patch("v1", "PersistentVolumeClaim", name_of(target),
                                      {"metadata": {"finalizers": finalizers}}, namespace_of(target))

    @staticmethod
    def _temporary_kinds() -> Iterable[tuple[str, str]]:
        return (("v1", "Pod"), ("v1", "PersistentVolumeClaim"), (SNAPSHOT_API, "VolumeSnapshot"))

    async def _delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        try:
            await self._cluster.delete(api_version, kind, name, namespace)
        except NotFound:
            pass

    async def _event(self, target: Object, type_: str, reason: str, message: str) -> None:
        await self._events.record(target, type_, reason, message, component=COMPONENT)


def _target_of_temporary(obj: Object) -> list[Key]:
    """A temporary claim or pod maps back to its target through `cdi.kubevirt.io/storage.ownerRef`."""
    owner = annotations_of(obj).get(ann.ANN_OWNER_REF, "")
    namespace, _, name = owner.partition("/")
    return [Key(namespace, name)] if is_temporary(obj) and namespace and name else []


def _self(obj: Object) -> list[Key]:
    return [Key.of(obj)] if clone_source_ref(obj) is not None else []


def controllers(cluster: Cluster, clock: Clock, authorization: CloneAuthorization,
                events: EventSink | None = None) -> list[ControllerSpec]:
    claims = Watch("v1", "PersistentVolumeClaim", lambda obj: [*_self(obj), *_target_of_temporary(obj)])
    return [ControllerSpec("clone-populator", "v1", "PersistentVolumeClaim",
                           ClonePopulator(cluster, clock, authorization, events), watches=[claims], workers=3,
                           predicate=lambda claim: clone_source_ref(claim) is not None)]
