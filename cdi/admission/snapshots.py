"""Admission of VolumeSnapshots and VolumeSnapshotContents: the CEL rules of external-snapshotter's CRDs.

A real API server enforces these through the CRDs (`cdi.embedded.snapshots.crds` renders the same
rules); the embedded store calls `admit_snapshot` on every write so both backends refuse the same
objects with the same messages. A snapshot's `spec.source` is exactly one of
`persistentVolumeClaimName` and `volumeSnapshotContentName`, neither may change or be dropped once
set, and `volumeSnapshotClassName` may not be "". A content's `spec.source` is exactly one of
`volumeHandle` and `snapshotHandle` with the same immutability, its `sourceVolumeMode` is immutable,
and its `volumeSnapshotRef` names both a snapshot and a namespace. Status writes are not checked.
"""

from __future__ import annotations

from typing import Any

from cdi.admission.request import AdmissionRequest
from cdi.cluster.errors import Invalid

GROUP = "snapshot.storage.k8s.io"
_SOURCES = {"VolumeSnapshot": ("persistentVolumeClaimName", "volumeSnapshotContentName"),
            "VolumeSnapshotContent": ("volumeHandle", "snapshotHandle")}


def admit_snapshot(request: AdmissionRequest) -> None:
    kind = request.kind.kind
    if request.kind.group != GROUP or kind not in _SOURCES or request.is_status:
        return
    spec = request.object.get("spec") or {}
    old_spec = (request.old_object.get("spec") or {}) if request.old_object is not None else None
    problems = _source_problems(spec, old_spec, *_SOURCES[kind])
    if kind == "VolumeSnapshot":
        if spec.get("volumeSnapshotClassName") == "":
            problems.append('spec.volumeSnapshotClassName: Invalid value: "string": volumeSnapshotClassName must '
                            "not be the empty string when set")
    else:
        problems += _content_problems(spec, old_spec)
    if problems:
        listed = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise Invalid(f'{kind}.{GROUP} "{request.name}" is invalid: {listed}', causes=problems)


def _source_problems(spec: dict[str, Any], old_spec: dict[str, Any] | None, first: str, second: str) -> list[str]:
    source = spec.get("source")
    if not isinstance(source, dict):
        return ["spec.source: Required value"]
    problems = []
    old_source = (old_spec or {}).get("source") or {}
    if old_spec is not None:
        for field in (first, second):
            if field in old_source and field not in source:
                problems.append(f'spec.source: Invalid value: "object": {field} is required once set')
            elif field in old_source and source[field] != old_source[field]:
                problems.append(f'spec.source.{field}: Invalid value: "string": {field} is immutable')
    if (first in source) == (second in source):
        problems.append(f'spec.source: Invalid value: "object": exactly one of {second} and {first} must be set')
    return problems


def _content_problems(spec: dict[str, Any], old_spec: dict[str, Any] | None) -> list[str]:
    problems = []
    ref = spec.get("volumeSnapshotRef")
    if isinstance(ref, dict) and not (ref.get("name") and ref.get("namespace")):
        problems.append('spec.volumeSnapshotRef: Invalid value: "object": both spec.volumeSnapshotRef.name and '
                        "spec.volumeSnapshotRef.namespace must be set")
    if old_spec is not None and "sourceVolumeMode" in old_spec:
        if "sourceVolumeMode" not in spec:
            problems.append('spec: Invalid value: "object": sourceVolumeMode is required once set')
        elif spec["sourceVolumeMode"] != old_spec["sourceVolumeMode"]:
            problems.append('spec.sourceVolumeMode: Invalid value: "string": sourceVolumeMode is immutable')
    return problems
