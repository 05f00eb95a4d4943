"""The CustomResourceDefinitions of `snapshot.storage.k8s.io/v1` (VolumeSnapshot, VolumeSnapshotContent,
VolumeSnapshotClass), for a cluster that does not have them yet.

A real cluster gets them from external-snapshotter's manifests; this renderer is faithful to those for
what our controllers and tests rely on: the group, version v1, names, short names and scopes, the status
subresource of the two that have one, the fields with their types, required fields and enums, and the
CEL rules upstream's CRDs carry (a snapshot's or content's source is exactly one of two fields and
immutable; a content's volumeSnapshotRef names a snapshot and namespace). The embedded store enforces
the same rules in `cdi.admission.snapshots`. The test harness (`tests/support/backends.py`) installs
them into its kube-apiserver; `all_snapshot_crds()` is the entry point.
"""

from __future__ import annotations

from typing import Any

GROUP = "snapshot.storage.k8s.io"
API_APPROVED = "api-approved.kubernetes.io"
API_APPROVAL = "https://github.com/kubernetes-csi/external-snapshotter/pull/814"
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
                    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
Schema = dict[str, Any]


def _string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def _immutable(schema: Schema, field: str) -> Schema:
    return {**schema, "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": f"{field} is immutable"}]}


def _one_of(first: str, second: str) -> list[Schema]:
    """Upstream's rules on a `source`: exactly one of two fields, and neither may be dropped once set."""
    return [
        {"rule": f"!has(oldSelf.{first}) || has(self.{first})", "message": f"{first} is required once set"},
        {"rule": f"!has(oldSelf.{second}) || has(self.{second})", "message": f"{second} is required once set"},
        {"rule": f"(has(self.{second}) && !has(self.{first})) || (!has(self.{second}) && has(self.{first}))",
         "message": f"exactly one of {second} and {first} must be set"},
    ]


_ERROR: Schema = {"type": "object", "properties": {"message": _string(), "time": _string(format="date-time")}}


def _crd(kind: str, plural: str, scope: str, short_names: list[str], schema: Schema, *, status: bool,
         columns: list[Schema]) -> dict[str, Any]:
    version: dict[str, Any] = {"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": columns,
                               "schema": {"openAPIV3Schema": schema}}
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        # *.k8s.io groups are protected: the API server wants the approval upstream's CRDs carry
        "metadata": {"name": f"{plural}.{GROUP}", "annotations": {API_APPROVED: API_APPROVAL}},
        "spec": {"group": GROUP, "scope": scope, "versions": [version],
                 "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                           "shortNames": short_names}},
    }


def _object(spec: Schema, status: Schema | None = None, *, required: tuple[str, ...] = ("spec",)) -> Schema:
    properties: Schema = {"apiVersion": _string(), "kind": _string(), "metadata": {"type": "object"}, "spec": spec}
    if status is not None:
        properties["status"] = status
    return {"type": "object", "properties": properties, "required": list(required)}


def volume_snapshot_crd() -> dict[str, Any]:
    source = {"type": "object", "x-kubernetes-validations": _one_of("persistentVolumeClaimName",
                                                                    "volumeSnapshotContentName"),
              "properties": {"persistentVolumeClaimName": _immutable(_string(), "persistentVolumeClaimName"),
                             "volumeSnapshotContentName": _immutable(_string(), "volumeSnapshotContentName")}}
    spec = {"type": "object", "required": ["source"], "properties": {
        "source": source,
        "volumeSnapshotClassName": _string(**{"x-kubernetes-validations": [
            {"rule": "size(self) != 0", "message": "volumeSnapshotClassName must not be the empty string when set"}]}),
    }}
    status = {"type": "object", "properties": {
        "boundVolumeSnapshotContentName": _string(), "creationTime": _string(format="date-time"), "error": _ERROR,
        "readyToUse": {"type": "boolean"}, "volumeGroupSnapshotName": _string(),
        "restoreSize": {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN,
                        "anyOf": [{"type": "integer"}, {"type": "string"}]}}}
    columns = [{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
               {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"},
               {"name": "SourceSnapshotContent", "type": "string",
                "jsonPath": ".spec.source.volumeSnapshotContentName"},
               {"name": "RestoreSize", "type": "string", "jsonPath": ".status.restoreSize"},
               {"name": "SnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
               {"name": "SnapshotContent", "type": "string", "jsonPath": ".status.boundVolumeSnapshotContentName"},
               {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"},
               {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return _crd("VolumeSnapshot", "volumesnapshots", "Namespaced", ["vs"], _object(spec, status), status=True,
                columns=columns)


def volume_snapshot_content_crd() -> dict[str, Any]:
    source = {"type": "object", "x-kubernetes-validations": _one_of("volumeHandle", "snapshotHandle"),
              "properties": {"volumeHandle": _immutable(_string(), "volumeHandle"),
                             "snapshotHandle": _immutable(_string(), "snapshotHandle")}}
    reference = {"type": "object", "x-kubernetes-map-type": "atomic",
                 "x-kubernetes-validations": [{"rule": "has(self.name) && has(self.__namespace__)",
                                               "message": "both spec.volumeSnapshotRef.name and "
                                                          "spec.volumeSnapshotRef.namespace must be set"}],
                 "properties": {key: _string() for key in ("apiVersion", "fieldPath", "kind", "name", "namespace",
                                                           "resourceVersion", "uid")}}
    spec = {"type": "object", "required": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"],
            "x-kubernetes-validations": [{"rule": "!has(oldSelf.sourceVolumeMode) || has(self.sourceVolumeMode)",
                                          "message": "sourceVolumeMode is required once set"}],
            "properties": {
                "deletionPolicy": _string(enum=["Delete", "Retain"]), "driver": _string(), "source": source,
                "sourceVolumeMode": _immutable(_string(enum=["Block", "Filesystem"]), "sourceVolumeMode"),
                "volumeSnapshotClassName": _string(), "volumeSnapshotRef": reference}}
    status = {"type": "object", "properties": {
        "creationTime": {"type": "integer", "format": "int64"}, "error": _ERROR, "readyToUse": {"type": "boolean"},
        "restoreSize": {"type": "integer", "format": "int64", "minimum": 0}, "snapshotHandle": _string(),
        "volumeGroupSnapshotHandle": _string()}}
    columns = [{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
               {"name": "RestoreSize", "type": "integer", "jsonPath": ".status.restoreSize"},
               {"name": "DeletionPolicy", "type": "string", "jsonPath": ".spec.deletionPolicy"},
               {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"},
               {"name": "VolumeSnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
               {"name": "VolumeSnapshot", "type": "string", "jsonPath": ".spec.volumeSnapshotRef.name"},
               {"name": "VolumeSnapshotNamespace", "type": "string", "jsonPath": ".spec.volumeSnapshotRef.namespace"},
               {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return _crd("VolumeSnapshotContent", "volumesnapshotcontents", "Cluster", ["vsc", "vscs"], _object(spec, status),
                status=True, columns=columns)


def volume_snapshot_class_crd() -> dict[str, Any]:
    schema: Schema = {"type": "object", "required": ["deletionPolicy", "driver"], "properties": {
        "apiVersion": _string(), "kind": _string(), "metadata": {"type": "object"},
        "deletionPolicy": _string(enum=["Delete", "Retain"]), "driver": _string(),
        "parameters": {"type": "object", "additionalProperties": _string()}}}
    columns = [{"name": "Driver", "type": "string", "jsonPath": ".driver"},
               {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"},
               {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    return _crd("VolumeSnapshotClass", "volumesnapshotclasses", "Cluster", ["vsclass", "vsclasses"], schema,
                status=False, columns=columns)


def all_snapshot_crds() -> list[dict[str, Any]]:
    return [volume_snapshot_class_crd(), volume_snapshot_content_crd(), volume_snapshot_crd()]
