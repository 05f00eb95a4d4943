"""Builds the PersistentVolumeClaim a DataVolume creates (upstream's non-populator path): the rendered
spec, the DataVolume's labels and annotations, the annotations the PVC-level controllers act on — the
import source (§2.1 of the reference) or the upload-target marker — and a controller ownerReference to
the DataVolume. Pure; used by `cdi.controllers.datavolume.controller`."""

from __future__ import annotations

from typing import Any

from cdi.api import DataVolume, dump_object
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView
from cdi.controllers.meta import controller_reference

IMPORT_SOURCES = ("http", "s3", "gcs", "registry", "blank", "imageio", "vddk")
CLONE_SOURCES = ("pvc", "snapshot")


def stored_source_members(doc: Object) -> frozenset[str]:
    """The `spec.source` members a stored DataVolume sets, read from the object without parsing it: what
    the DataVolume controllers' predicates look at before a reconcile parses the object (`members()`)."""
    source = (doc.get("spec") or {}).get("source")
    return frozenset(k for k, v in source.items() if v is not None) if isinstance(source, dict) else frozenset()


def stored_source_ref_kind(doc: Object) -> str | None:
    """The kind a stored DataVolume's `spec.sourceRef` names (None: no sourceRef)."""
    ref = (doc.get("spec") or {}).get("sourceRef")
    return str(ref.get("kind") or "") if isinstance(ref, dict) else None


def may_import(doc: Object) -> bool:
    return not stored_source_members(doc).isdisjoint(IMPORT_SOURCES)


def may_upload(doc: Object) -> bool:
    return "upload" in stored_source_members(doc)


def may_clone(doc: Object) -> bool:
    """A clone source, or a DataSource (it resolves to a claim or a snapshot)."""
    return not stored_source_members(doc).isdisjoint(CLONE_SOURCES) or stored_source_ref_kind(doc) == "DataSource"


def import_source_kind(dv: DataVolume) -> str | None:
    """The import source member set on the DataVolume, if it is an import at all."""
    if dv.spec.source is None:
        return None
    members = dv.spec.source.members()
    return next((m for m in IMPORT_SOURCES if m in members), None)


def source_annotations(dv: DataVolume) -> dict[str, str]:
    """The `storage.import.*` annotations for the DataVolume's import source."""
    kind = import_source_kind(dv)
    if kind is None:
        return {}
    source: dict[str, Any] = dump_object(dv)["spec"]["source"].get(kind) or {}
    if kind == "blank":
        return {ann.ANN_SOURCE: "none"}
    result = {ann.ANN_SOURCE: kind}
    if source.get("url"):
        result[ann.ANN_ENDPOINT] = str(source["url"])
    elif source.get("imageStream"):
        result[ann.ANN_ENDPOINT] = str(source["imageStream"])
        result[ann.ANN_REGISTRY_IMAGE_STREAM] = "true"
    simple = {"secretRef": ann.ANN_SECRET, "certConfigMap": ann.ANN_CERT_CONFIG_MAP, "checksum": ann.ANN_CHECKSUM,
              "diskId": ann.ANN_DISK_ID, "uuid": ann.ANN_UUID, "backingFile": ann.ANN_BACKING_FILE,
              "thumbprint": ann.ANN_THUMBPRINT, "pullMethod": ann.ANN_REGISTRY_IMPORT_METHOD}
    for field, key in simple.items():
        if source.get(field):
            result[key] = str(source[field])
    if source.get("insecureSkipVerify"):
        result[ann.ANN_INSECURE_SKIP_VERIFY] = "true"
    if (source.get("platform") or {}).get("architecture"):
        result[ann.ANN_REGISTRY_IMAGE_ARCHITECTURE] = str(source["platform"]["architecture"])
    for i, header in enumerate(source.get("extraHeaders") or []):
        result[f"{ann.ANN_EXTRA_HEADERS}.{i}"] = str(header)
    for i, secret in enumerate(source.get("secretExtraHeaders") or []):
        result[f"{ann.ANN_SECRET_EXTRA_HEADERS}.{i}"] = str(secret)
    return result


def upload_annotations(dv: DataVolume) -> dict[str, str]:
    """An upload target: the PVC-level upload controller gives it an upload server."""
    return {ann.ANN_UPLOAD_REQUEST: ""} if dv.spec.source is not None and "upload" in dv.spec.source.members() else {}


def new_claim(dv: DataVolume, dv_doc: Object, spec: dict[str, Any], config: ConfigView,
              operation_annotations: dict[str, str]) -> Object:
    """The DataVolume's PVC: rendered spec, the DataVolume's labels and annotations, the operation's
    annotations (import source or upload target), and a controller reference to the DataVolume."""
    meta = dv_doc["metadata"]
    labels = {**(meta.get("labels") or {}), ann.LABEL_APP: ann.APP_NAME}
    if spec.get("volumeMode", "Filesystem") != "Block":
        labels[ann.LABEL_SUPPRESS_FILLING_UP_ALERT] = "disabled"
    preallocation = dv.spec.preallocation if dv.spec.preallocation is not None else config.preallocation
    annotations = {
        **(meta.get("annotations") or {}),
        **operation_annotations,
        ann.ANN_POD_RESTARTS: "0",
        ann.ANN_CONTENT_TYPE: dv.spec.content_type.value,
        ann.ANN_PREALLOCATION_REQUESTED: "true" if preallocation else "false",
        ann.ANN_CREATED_FOR_DATA_VOLUME: str(meta["uid"]),
    }
    if dv.spec.priority_class_name:
        annotations[ann.ANN_PRIORITY_CLASS_NAME] = dv.spec.priority_class_name
    if dv.spec.service_account_name:
        annotations[ann.ANN_POD_SERVICE_ACCOUNT_NAME] = dv.spec.service_account_name
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
                     "annotations": annotations, "ownerReferences": [controller_reference(dv_doc)]},
        "spec": spec,
    }
