"""Recording v1 Events about an object, the way client-go's event recorder does, on any `Cluster`.

Controllers call `record_event` to leave the "Events:" lines `describe` shows. Like the recorder, a
repeat of the same event (same source, involved object, type, reason and message) is not a new Event
but bumps `count` and `lastTimestamp` of the existing one. Where client-go finds that Event through an
in-process cache, we derive its name from the same key, so every process (a `cdi serve` and a CLI)
aggregates into one Event; concurrent recorders retry on `Conflict` through a resourceVersion
precondition on the merge patch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from cdi.cluster.errors import AlreadyExists, Conflict, Invalid, NotFound
from cdi.cluster.protocol import Cluster, Object

EVENT_TYPES = ("Normal", "Warning")
_ATTEMPTS = 5
_MAX_NAME = 253


async def record_event(cluster: Cluster, involved: Object, type_: str, reason: str, message: str, *,
                       component: str, clock: Callable[[], datetime], host: str = "") -> Object:
    """Create the Event, or count one more occurrence of it; returns the Event as stored."""
    if type_ not in EVENT_TYPES:
        raise Invalid(f"event type must be one of {', '.join(EVENT_TYPES)}, not {type_!r}")
    reference = involved_object(involved)
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
        bump = {"metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
                "count": int(existing.get("count") or 1) + 1, "lastTimestamp": now, "message": message}
        try:
            return await cluster.patch("v1", "Event", name, bump, namespace)
        except (Conflict, NotFound):
            continue
    raise Conflict(f'event "{name}" in namespace "{namespace}" kept changing; gave up after {_ATTEMPTS} attempts')


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
