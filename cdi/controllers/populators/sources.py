"""The two population sources CDI fills claims from, behind one small record: what PVC′ must carry.

A claim whose `dataSourceRef` is `{apiGroup: cdi.kubevirt.io, kind: VolumeImportSource|VolumeUploadSource}`
is populated through a PVC′ that the PVC-level controllers serve unchanged: an import source becomes
the `storage.import.*` annotations the import controller (`cdi.controllers.importpod`) reads, exactly
as a DataVolume's source becomes them on its claim (`cdi.controllers.datavolume.claim`); an upload
source becomes the upload-target marker the upload controller (`cdi.controllers.upload`) reads. Each
kind also names its success and failure events (upstream's reasons) and whether it reports progress.
`KINDS` registers them by kind; `cdi.controllers.populators.plan` is the only caller. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cdi.api import ManifestError, VolumeImportSource, VolumeUploadSource, dump_object, parse_object
from cdi.api.meta import CDI_GROUP
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.config_view import ConfigView

IMPORT_SOURCES = ("http", "s3", "gcs", "registry", "blank", "imageio", "vddk")
# A source member's field → the annotation carrying it (upstream's `storage.import.*` keys).
_SIMPLE_FIELDS = {"secretRef": ann.ANN_SECRET, "certConfigMap": ann.ANN_CERT_CONFIG_MAP, "checksum": ann.ANN_CHECKSUM,
                  "diskId": ann.ANN_DISK_ID, "uuid": ann.ANN_UUID, "backingFile": ann.ANN_BACKING_FILE,
                  "thumbprint": ann.ANN_THUMBPRINT, "pullMethod": ann.ANN_REGISTRY_IMPORT_METHOD}


class InvalidSource(Exception):
    """The population source cannot be turned into PVC′'s annotations (reason `InvalidPopulationSource`)."""

    reason = "InvalidPopulationSource"


@dataclass(frozen=True)
class PopulatorKind:
    """One population source kind: how PVC′ is annotated for it and which events tell the outcome."""

    kind: str
    operation_annotations: Callable[[Object], dict[str, str]]  # from the source object; may raise InvalidSource
    succeeded: tuple[str, str]  # event reason, message ("%s": the target claim's name)
    failed: tuple[str, str]
    reports_progress: bool

    def prime_annotations(self, source: Object, config: ConfigView) -> dict[str, str]:
        """Everything PVC′ carries because of the source: operation, content type, preallocation, kind."""
        spec = source.get("spec") or {}
        preallocation = spec.get("preallocation")
        if preallocation is None:
            preallocation = config.preallocation
        return {**self.operation_annotations(source),
                ann.ANN_CONTENT_TYPE: str(spec.get("contentType") or "kubevirt"),
                ann.ANN_PREALLOCATION_REQUESTED: "true" if preallocation else "false",
                ann.ANN_POPULATOR_KIND: self.kind}


def import_member_annotations(kind: str, member: Mapping[str, Any]) -> dict[str, str]:
    """The `storage.import.*` annotations for one import source member (`http`, `s3`, …) in JSON form.
    The same translation as a DataVolume's source (`datavolume.claim.source_annotations`)."""
    if kind == "blank":
        return {ann.ANN_SOURCE: "none"}
    result = {ann.ANN_SOURCE: kind}
    if member.get("url"):
        result[ann.ANN_ENDPOINT] = str(member["url"])
    elif member.get("imageStream"):
        result[ann.ANN_ENDPOINT] = str(member["imageStream"])
        result[ann.ANN_REGISTRY_IMAGE_STREAM] = "true"
    for field, key in _SIMPLE_FIELDS.items():
        if member.get(field):
            result[key] = str(member[field])
    if member.get("insecureSkipVerify"):
        result[ann.ANN_INSECURE_SKIP_VERIFY] = "true"
    if (member.get("platform") or {}).get("architecture"):
        result[ann.ANN_REGISTRY_IMAGE_ARCHITECTURE] = str(member["platform"]["architecture"])
    for i, header in enumerate(member.get("extraHeaders") or []):
        result[ann.extra_header_key(i)] = str(header)
    for i, secret in enumerate(member.get("secretExtraHeaders") or []):
        result[ann.secret_extra_header_key(i)] = str(secret)
    return result


def _parsed(doc: Object, model: type[VolumeImportSource] | type[VolumeUploadSource]) -> dict[str, Any]:
    """The source's spec as admission would store it (defaults filled in), in JSON names."""
    try:
        obj = parse_object(doc)
    except ManifestError as e:
        raise InvalidSource(f"{doc.get('kind')} {(doc.get('metadata') or {}).get('name')} is invalid: "
                            f"{'; '.join(e.messages)}") from e
    if not isinstance(obj, model):
        raise InvalidSource(f"expected a {model.__name__}, got a {doc.get('kind')}")
    return dict(dump_object(obj).get("spec") or {})


def import_annotations(doc: Object) -> dict[str, str]:
    spec = _parsed(doc, VolumeImportSource)
    members = spec.get("source") or {}
    kind = next((m for m in IMPORT_SOURCES if m in members), None)
    if kind is None:
        raise InvalidSource(f"VolumeImportSource {(doc.get('metadata') or {}).get('name')} names no import source")
    return import_member_annotations(kind, members[kind] or {})


def upload_annotations(doc: Object) -> dict[str, str]:
    _parsed(doc, VolumeUploadSource)
    return {ann.ANN_UPLOAD_REQUEST: ""}


IMPORT = PopulatorKind("VolumeImportSource", import_annotations,
                       ("ImportSucceeded", "Successfully imported into PVC %s"),
                       ("ImportFailed", "Failed to import into PVC %s"), reports_progress=True)
UPLOAD = PopulatorKind("VolumeUploadSource", upload_annotations,
                       ("UploadSucceeded", "Successfully uploaded into PVC %s"),
                       ("UploadFailed", "Upload into PVC %s failed"), reports_progress=False)
KINDS: dict[str, PopulatorKind] = {kind.kind: kind for kind in (IMPORT, UPLOAD)}


def populator_of(claim: Object) -> PopulatorKind | None:
    """The import or upload populator a claim's `dataSourceRef` names, if any."""
    ref = (claim.get("spec") or {}).get("dataSourceRef") or {}
    if ref.get("apiGroup") != CDI_GROUP:
        return None
    return KINDS.get(str(ref.get("kind")))
