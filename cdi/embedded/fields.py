"""Field selectors as the API server understands them, for the embedded store's `list` and `watch`.

Syntax: comma-separated `path=value`, `path==value` or `path!=value`, all required. As on a real API
server, only some fields are selectable: `metadata.name` and `metadata.namespace` for every kind, and a
few more per built-in kind (a pod's `spec.nodeName` and `status.phase`, an event's `involvedObject.*`,
a secret's `type` ...); any other field is refused with the server's message, so that code written
against the embedded store asks a real cluster only what it can answer. A malformed selector raises
`BadRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdi.cluster.errors import BadRequest

_ALWAYS = ("metadata.name", "metadata.namespace")
# Per (group, kind): the extra fields the API server indexes for selection.
SELECTABLE: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                  "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ("", "Event"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                    "reason", "reportingComponent", "source", "type"),
    ("", "Secret"): ("type",),
    ("", "Node"): ("spec.unschedulable",),
    ("", "Namespace"): ("status.phase",),
    ("", "ReplicationController"): ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    equal: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.path) == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(requirement.matches(obj) for requirement in self.requirements)


EVERYTHING = FieldSelector()


def parse_field_selector(text: str | None, group: str, kind: str, api_version: str) -> FieldSelector:
    """The selector for `text` (None or "": everything); `BadRequest` when it is malformed or unsupported."""
    if not text:
        return EVERYTHING
    allowed = (*_ALWAYS, *SELECTABLE.get((group, kind), ()))
    requirements = []
    for term in text.split(","):
        path, operator, value = _split(term.strip(), text)
        if path not in allowed:
            if (group, kind) in SELECTABLE:
                raise BadRequest(f"field label not supported: {path}")
            raise BadRequest(f'"{path}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        requirements.append(FieldRequirement(path, value, operator != "!="))
    return FieldSelector(tuple(requirements))


def _split(term: str, text: str) -> tuple[str, str, str]:
    for operator in ("!=", "==", "="):
        path, found, value = term.partition(operator)
        if found and path.strip():
            return path.strip(), operator, value.strip()
    raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The field as the API server compares it: a string, "" when absent, booleans as true/false."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
