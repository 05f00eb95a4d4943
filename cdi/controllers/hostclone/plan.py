"""The clone source controller's decisions, as a pure function of one frozen observation of a host-assisted
clone target (a PVC annotated `k8s.io/CloneRequest`), in upstream's order (`clone-controller.go`):

    target being deleted              stop the source pod, delete its Secret, drop the finalizer
    target's upload succeeded         `k8s.io/CloneOf=true`, progress 100%, Normal `CloneSucceeded`
                                      "Clone Complete" (once), then the same clean-up
    target failed fatally             the same clean-up (the failure is already on the target)
    not authorized (cross-namespace)  Warning, no pod
    no source pod yet:
      source missing/unbound/unpopulated   wait (requeue 5 s)
      upload pod not ready                 wait (the upload controller's next write wakes us)
      source used read-write elsewhere     Warning `CloneSourceInUse` per pod, requeue 2 s
      otherwise                            record `storage.sourceClonePodName`, add the finalizer, start it
    source pod running:
      its upload pod was replaced          delete it (it is recreated with the new address)
      it failed                            surface on the target as imports do (`workerstate`): restarts
                                           and last failure; a fatal failure also ends both pods
      progress scraped                     `storage.populator.progress` (the controller scrapes at most
                                           every 2 s, so this is written at most that often)

`cdi.controllers.hostclone.controller` observes and applies.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.contracts import clone_protocol as cp
from cdi.contracts.metrics import format_progress
from cdi.controllers.hostclone.podspec import upload_url_host
from cdi.controllers.meta import annotations_of, is_deleting, name_of, namespace_of
from cdi.controllers.workerstate import observe_worker
from cdi.runtime.types import DONE, Result

SOURCE_WAIT = 5.0
IN_USE_WAIT = 2.0
PROGRESS_INTERVAL = 2.0
CLONE_SUCCESS = ("CloneSucceeded", cp.CLONE_COMPLETE)
SOURCE_KEEPS = (ann.ANN_POD_RESTARTS, ann.ANN_POD_LAST_FAILURE)  # what a retryable source failure writes


class Act(enum.Enum):
    START_SOURCE = "start source pod and its Secret"
    DELETE_SOURCE_POD = "delete source pod"
    DELETE_SECRET = "delete source Secret"
    DELETE_UPLOAD_POD = "delete upload pod"
    ADD_FINALIZER = "add finalizer"
    REMOVE_FINALIZER = "remove finalizer"


@dataclass(frozen=True)
class Observation:
    target: Object
    source: Object | None = None  # the source PVC
    source_pod: Object | None = None
    upload_pod: Object | None = None
    secret_exists: bool = False
    users: tuple[str, ...] = ()  # "<ns>/<pod>" of other live pods using the source read-write
    refusal: str | None = None  # why a cross-namespace clone is not authorized
    progress: float | None = None  # scraped just now from the source pod


@dataclass(frozen=True)
class Plan:
    acts: tuple[Act, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    events: tuple[tuple[str, str, str], ...] = ()
    result: Result = DONE


def source_ready(source: Object | None) -> bool:
    """Bound, and populated when CDI populates it (a claim with a worker phase must have succeeded)."""
    if source is None or is_deleting(source) or (source.get("status") or {}).get("phase") != "Bound":
        return False
    phase = annotations_of(source).get(ann.ANN_POD_PHASE)
    return phase is None or phase == "Succeeded"


def _cleanup(o: Observation) -> tuple[Act, ...]:
    acts: list[Act] = []
    if o.source_pod is not None and not is_deleting(o.source_pod):
        acts.append(Act.DELETE_SOURCE_POD)
    if o.secret_exists:
        acts.append(Act.DELETE_SECRET)
    if ann.FINALIZER_CLONE_SOURCE in (o.target.get("metadata") or {}).get("finalizers", []):
        acts.append(Act.REMOVE_FINALIZER)
    return tuple(acts)


def _succeeded(o: Observation) -> Plan:
    notes = annotations_of(o.target)
    if notes.get(ann.ANN_CLONE_OF) == "true":
        return Plan(_cleanup(o))
    return Plan(_cleanup(o), {ann.ANN_CLONE_OF: "true", ann.ANN_POPULATOR_PROGRESS: format_progress(100.0)},
                (("Normal", *CLONE_SUCCESS),))


def _start(o: Observation, pod_name: str) -> Plan:
    assert o.source is not None
    if not source_ready(o.source):
        return Plan(result=Result(requeue_after=SOURCE_WAIT))
    if annotations_of(o.target).get(ann.ANN_POD_READY) != "true" or o.upload_pod is None:
        return Plan()
    if o.users:
        events = tuple(("Warning", "CloneSourceInUse", f"pod {user} using PersistentVolumeClaim {name_of(o.source)}")
                       for user in o.users)
        return Plan(events=events, result=Result(requeue_after=IN_USE_WAIT))
    acts = (Act.ADD_FINALIZER,) if ann.FINALIZER_CLONE_SOURCE not in (o.target.get("metadata") or {}).get(
        "finalizers", []) else ()
    return Plan((*acts, Act.START_SOURCE), {ann.ANN_CLONE_SOURCE_POD: pod_name},
                result=Result(requeue_after=PROGRESS_INTERVAL))


def _running(o: Observation) -> Plan:
    pod = o.source_pod
    assert pod is not None
    if is_deleting(pod):
        return Plan(result=Result(requeue_after=1))
    upload_ip = ((o.upload_pod or {}).get("status") or {}).get("podIP")
    if upload_ip and upload_url_host(pod) not in (None, upload_ip):
        return Plan((Act.DELETE_SOURCE_POD,), result=Result(requeue_after=1))
    seen = observe_worker(o.target, pod, CLONE_SUCCESS)
    if seen.fatal:
        return Plan((*_cleanup(o), Act.DELETE_UPLOAD_POD), seen.annotations, seen.events)
    notes = {k: v for k, v in seen.annotations.items() if k in SOURCE_KEEPS}
    if o.progress is not None:
        notes[ann.ANN_POPULATOR_PROGRESS] = format_progress(o.progress)
    events = tuple(e for e in seen.events if e[0] == "Warning")
    phase = (pod.get("status") or {}).get("phase")
    return Plan(annotations=notes, events=events,
                result=DONE if phase in ("Succeeded", "Failed") else Result(requeue_after=PROGRESS_INTERVAL))


def plan(o: Observation, pod_name: str) -> Plan:
    target = o.target
    notes = annotations_of(target)
    if is_deleting(target):
        return Plan(_cleanup(o))
    if notes.get(ann.ANN_POD_PHASE) == "Succeeded":
        return _succeeded(o)
    if notes.get(ann.ANN_IMPORT_FATAL_ERROR) == "true":
        return Plan(_cleanup(o))
    if o.source_pod is None and o.refusal is not None:
        return Plan(events=(("Warning", "ErrCloneNotAuthorized", o.refusal),))
    if o.source_pod is None:
        if o.source is None:
            return Plan(result=Result(requeue_after=SOURCE_WAIT))
        return _start(o, pod_name)
    return _running(o)


def same_namespace_only(target: Object) -> str | None:
    """The default authorization: a clone within one namespace is allowed, any other is refused until a
    clone-token check is plugged in."""
    request = annotations_of(target).get(ann.ANN_CLONE_REQUEST, "")
    namespace, _, name = request.rpartition("/")
    if namespace and namespace != namespace_of(target):
        return (f"cloning PersistentVolumeClaim {namespace}/{name} into namespace {namespace_of(target)} is not "
                f"authorized: cross-namespace host-assisted clones need a valid clone token")
    return None
