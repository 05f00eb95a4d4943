"""The import and upload populators' decision for one target claim, as a pure function of what was seen.

`plan(Observed) -> Plan`: an ordered tuple of actions and when to look again. The walk follows
upstream's populator base and its import/upload reconcilers:

1. A target being deleted: delete PVC′ (owner references would too; this does not wait for them).
2. A bound target needs nothing more: PVC′, Lost once its volume was handed over, is deleted (kept
   when `storage.pod.retainAfterCompletion=true`, as upstream keeps it for debugging).
3. Wait for the source object (it may be created right after the claim) and for the claim to be ready
   for population (`prime.readiness`); a source whose `targetClaim` names another claim is ignored.
4. No PVC′ yet: create it (`prime.prime_claim`), name it on the target (`storage.populator.pvcPrime`,
   which the upload proxy follows) and say so (`CreatedPVCPrimeSuccessfully`).
5. PVC′ exists: mirror its worker state onto the target (`prime.mirrored_annotations`), and progress
   for imports (`storage.populator.progress`: `N/A` before the worker runs, the scraped percentage while
   it runs — never 100% before it succeeded —, `100.0%` once it has). A failed worker gets the kind's
   Warning once per failure. A succeeded worker's labels are copied, then its volume is handed to the
   target (`rebind`) and the kind's success event recorded; the binder then binds the target. PVC′'s
   events are repeated on the target once each (`prime.forwarded_events`).

`cdi.controllers.populators.controller` observes, calls `plan` and applies the actions in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import annotations_of, is_deleting, name_of
from cdi.controllers.populators import prime as pvc_prime
from cdi.controllers.populators.rebind import Handed, RebindFailed, claim_ref_patch, handover
from cdi.controllers.populators.sources import InvalidSource, PopulatorKind

PRIME_CREATED = ("CreatedPVCPrimeSuccessfully", "PVC Prime created successfully")
RETAINED_PRIME = ("RetainedPVCPrime", "PVC Prime %s retained after completion")
PROGRESS_INTERVAL = 2.0  # upstream requeues every 2 s to keep reporting progress
SOURCE_WAIT = 5.0
REFUSED_WAIT = 30.0
NOT_AVAILABLE = "N/A"
COMPLETE = "100.0%"


@dataclass(frozen=True)
class Observed:
    """Everything the decision needs, read before it is made."""

    target: Object
    kind: PopulatorKind
    source: Object | None
    storage_class: Object | None
    prime: Object | None
    volume: Object | None  # the PersistentVolume PVC′ is bound to
    config: ConfigView = field(default_factory=ConfigView)
    worker_running: bool = False  # PVC′'s worker pod exists
    progress: float | None = None  # scraped from the running worker (imports)
    prime_events: tuple[pvc_prime.EventLine, ...] = ()  # PVC′'s events, oldest first
    target_events: tuple[pvc_prime.EventLine, ...] = ()


@dataclass(frozen=True)
class CreatePrime:
    claim: Object


@dataclass(frozen=True)
class PatchTarget:
    annotations: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PatchVolume:
    volume: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class DeletePrime:
    name: str


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Action = CreatePrime | PatchTarget | PatchVolume | DeletePrime | Event


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None


def plan(seen: Observed) -> Plan:
    target, prime = seen.target, seen.prime
    if is_deleting(target):
        return Plan((DeletePrime(name_of(prime)),) if prime is not None and not is_deleting(prime) else ())
    if pvc_prime.volume_name(target):
        return _finished(seen)
    if seen.source is None:
        return Plan(requeue_after=SOURCE_WAIT)
    claim = (seen.source.get("spec") or {}).get("targetClaim")
    if claim and claim != name_of(target):
        return Plan()  # a multi-stage import's source for another claim
    ready = pvc_prime.readiness(target, seen.storage_class)
    if isinstance(ready, pvc_prime.Refuse):
        return Plan((Event("Warning", ready.reason, ready.message),), REFUSED_WAIT)
    if isinstance(ready, pvc_prime.Wait):
        return Plan(requeue_after=ready.requeue_after)
    if prime is None:
        return _create(seen)
    if is_deleting(prime):
        return Plan(requeue_after=PROGRESS_INTERVAL)  # an earlier PVC′ is going away
    return _follow(seen, prime)


def _finished(seen: Observed) -> Plan:
    prime = seen.prime
    if prime is None or is_deleting(prime):
        return Plan()
    if annotations_of(prime).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) == "true":
        return Plan()
    return Plan((DeletePrime(name_of(prime)),))


def _create(seen: Observed) -> Plan:
    target = seen.target
    if (target.get("status") or {}).get("phase") == "Lost":
        return Plan()
    assert seen.source is not None
    try:
        notes = seen.kind.prime_annotations(seen.source, seen.config)
    except InvalidSource as e:
        return Plan((Event("Warning", e.reason, str(e)),), REFUSED_WAIT)
    claim = pvc_prime.prime_claim(target, notes)
    return Plan((CreatePrime(claim), PatchTarget({ann.ANN_PVC_PRIME_NAME: name_of(claim)}),
                 Event("Normal", *PRIME_CREATED)))


def _progress(seen: Observed, phase: str | None) -> str | None:
    """The progress to show, or None to leave it as it is."""
    if not seen.kind.reports_progress:
        return None
    if phase == "Succeeded":
        return COMPLETE
    if seen.progress is not None and seen.worker_running:
        return f"{seen.progress:.2f}%" if seen.progress < 100 else None
    if not seen.worker_running and ann.ANN_POPULATOR_PROGRESS not in annotations_of(seen.target):
        return NOT_AVAILABLE
    return None


def _follow(seen: Observed, prime: Object) -> Plan:
    target, kind = seen.target, seen.kind
    current = annotations_of(target)
    phase = annotations_of(prime).get(ann.ANN_POD_PHASE)
    wanted = {ann.ANN_PVC_PRIME_NAME: name_of(prime), **pvc_prime.mirrored_annotations(prime, target)}
    progress = _progress(seen, phase)
    if progress is not None:
        wanted[ann.ANN_POPULATOR_PROGRESS] = progress
    changed = {key: value for key, value in wanted.items() if current.get(key) != value}
    actions: list[Action] = []
    forwarded = [Event(*line) for line in pvc_prime.forwarded_events(prime, seen.prime_events, seen.target_events)]
    if phase == "Succeeded":
        labels = pvc_prime.copied_labels(prime, target)
        if changed or labels:
            actions.append(PatchTarget(changed, labels))
        return _hand_over(seen, prime, [*actions, *forwarded])
    if changed:
        actions.append(PatchTarget(changed))
    actions += forwarded
    if phase == "Failed" and current.get(ann.ANN_POD_PHASE) != "Failed":
        reason, message = kind.failed
        actions.append(Event("Warning", reason, message % name_of(target)))
    running = phase == "Running" and kind.reports_progress
    return Plan(tuple(actions), PROGRESS_INTERVAL if running else None)


def _hand_over(seen: Observed, prime: Object, actions: list[Action]) -> Plan:
    volume = seen.volume
    if volume is None or not pvc_prime.is_bound(prime):
        return Plan(tuple(actions), PROGRESS_INTERVAL)  # PVC′ reports its volume shortly
    try:
        handed = handover(volume, prime, seen.target)
    except RebindFailed as e:
        return Plan((*actions, Event("Warning", e.reason, str(e))), REFUSED_WAIT)
    if handed is Handed.DONE:
        return Plan(tuple(actions), SOURCE_WAIT)  # the binder binds the target; its update wakes us
    patch = claim_ref_patch(volume, seen.target)
    reason, message = seen.kind.succeeded
    # State first, events after: a controller that dies in between has lost an event, not the hand-over.
    events = [Event("Normal", reason, message % name_of(seen.target))]
    if annotations_of(prime).get(ann.ANN_POD_RETAIN_AFTER_COMPLETION) == "true":
        events.append(Event("Normal", RETAINED_PRIME[0], RETAINED_PRIME[1] % name_of(prime)))
    return Plan((*actions, PatchVolume(patch.volume, patch.patch), *events), SOURCE_WAIT)
