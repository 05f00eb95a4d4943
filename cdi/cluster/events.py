"""Recording v1 Events about an object, the way client-go's event recorder does, on any `Cluster`.

Controllers call `record_event` to leave the "Events:" lines `describe` shows. Like the recorder, a
repeat of the same event (same source, involved object, type, reason and message) is not a new Event
but bumps `count` and `lastTimestamp` of the existing one. Where client-go finds that Event through an
in-process cache, we derive its name from the same key, so every process (a `cdi serve` and a CLI)
aggregates into one Event; concurrent recorders retry on `Conflict` through a resourceVersion
precondition on the merge patch.

Controllers do not call `record_event` themselves but record through an `EventSink`: `DirectEvents` writes
at once (what a reconciler built on its own gets), `cdi.runtime.recorder.QueuedEvents` (what the manager
hands its controllers) writes from a task of its own, as client-go's recorder does, so that a reconcile
does not wait for its Events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from cdi.cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from cdi.cluster.protocol import Cluster, Object

EVENT_TYPES = ("Normal", "Warning")
_ATTEMPTS = 5
_MAX_NAME = 253


async def record_event(cluster: Cluster, involved: Object, type_: str, reason: str, message: str, *,
                       component: str, clock: Callable[[], datetime], host: str = "") -> Object:
    """Create the Event, or count one more occurrence of it; returns the Event as stored."""
    reference = check_event(involved, type_)
    namespace = reference.get("namespace") or "default"  # events about cluster-scoped objects live here
    name = _event_name(reference, type_, reason, message, component, host)
    now = _timestamp(clock())
    for _ in range(_ATTEMPTS):
        try:
            existing = await cluster.get("v1", "Event", name, namespace)
        except NotFound:
            try:
                return await cluster.create(_new_event(name, namespace, reference, type_, reason, message,
                                                       component, host, now))
            except AlreadyExists:
                continue  # another recorder created it first: count ours on top
        # Recorders write concurrently, so an occurrence may be counted after a later one: the Event keeps
        # the earliest and the latest time (these timestamps compare as strings).
        bump = {"metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
                "count": int(existing.get("count") or 1) + 1, "message": message,
                "firstTimestamp": min(str(existing.get("firstTimestamp") or now), now),
                "lastTimestamp": max(str(existing.get("lastTimestamp") or now), now)}
        try:
            return await cluster.patch("v1", "Event", name, bump, namespace)
        except (Conflict, NotFound):
            continue
    raise Conflict(f'event "{name}" in namespace "{namespace}" kept changing; gave up after {_ATTEMPTS} attempts')


class EventSink(Protocol):
    """Where a controller records Events; `record` may return before the Event is written."""

    async def record(self, involved: Object, type_: str, reason: str, message: str, *, component: str) -> None:
        ...


class DirectEvents:
    """An `EventSink` that writes each Event before `record` returns."""

    def __init__(self, cluster: Cluster, clock: Callable[[], datetime], host: str = "") -> None:
        self._cluster, self._clock, self._host = cluster, clock, host

    async def record(self, involved: Object, type_: str, reason: str, message: str, *, component: str) -> None:
        await record_event(self._cluster, involved, type_, reason, message, component=component, clock=self._clock,
                           host=self._host)


def check_event(involved: Object, type_: str) -> Object:
    """The involved object's reference; `Invalid` for an event no API server would take."""
    if type_ not in EVENT_TYPES:
        raise Invalid(f"event type must be one of {', '.join(EVENT_TYPES)}, not {type_!r}")
    return involved_object(involved)


def involved_object(obj: Object) -> Object:
    """The ObjectReference an Event carries for `obj`."""
    meta = obj.get("metadata") or {}
    reference: Object = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                         "name": meta.get("name", "")}
    for field in ("namespace", "uid", "resourceVersion"):
        if meta.get(field):
            reference[field] = meta[field]
    if not reference["kind"] or not reference["name"]:
        raise Invalid("an event needs an involved object with kind and metadata.name")
    return reference


def _new_event(name: str, namespace: str, reference: Object, type_: str, reason: str, message: str,
               component: str, host: str, now: str) -> Object:
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": reference, "type": type_, "reason": reason, "message": message,
        "source": source, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
        "reportingComponent": component, "reportingInstance": host,
    }


def _event_name(reference: Object, type_: str, reason: str, message: str, component: str, host: str) -> str:
    """"<object name>.<16 hex digits>", as client-go names Events, but keyed on what aggregates."""
    key = "\x00".join([component, host, reference["apiVersion"], reference["kind"],
                       reference.get("namespace", ""), reference["name"], reference.get("uid", ""),
                       type_, reason, message])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    prefix = str(reference["name"])[:_MAX_NAME - 17].rstrip("-.")
    return f"{prefix}.{digest}"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
