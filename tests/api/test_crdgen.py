"""The generated CRDs: structural schemas and exactly upstream's names, columns and subresources."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cdi.api import KINDS, all_crds, resolve_kind
from cdi.api.crdgen import main

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in all_crds()}


def schema_of(kind: str, version: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][version]["schema"]["openAPIV3Schema"]
    return schema


def at(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    for name in path:
        schema = schema["items"] if name == "[]" else schema["properties"][name]
    return schema


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, child in node.get("properties", {}).items():
        nodes += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        nodes += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += walk(node["additionalProperties"], f"{path}{{}}")
    for branch in node.get("anyOf", []):
        nodes += walk(branch, f"{path}|")
    return nodes


def test_every_crd_kind_is_generated_and_upload_tokens_are_not() -> None:
    assert set(CRDS) == {"DataVolume", "DataSource", "DataImportCron", "StorageProfile", "CDIConfig", "CDI",
                         "ObjectTransfer", "VolumeImportSource", "VolumeUploadSource", "VolumeCloneSource"}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schemas_are_structural(kind: str) -> None:
    for version in range(len(CRDS[kind]["spec"]["versions"])):
        for path, node in walk(schema_of(kind, version)):
            assert "$ref" not in node and "$defs" not in node and "allOf" not in node, path
            assert "title" not in node and "default" not in node, path
            assert any(key in node for key in ("type", "x-kubernetes-preserve-unknown-fields",
                                               "x-kubernetes-int-or-string")), path
            assert {"type": "null"} not in node.get("anyOf", []), path
            if "properties" in node:
                assert "additionalProperties" not in node, path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string") is True, path


@pytest.mark.parametrize(("kind", "plural", "scope", "short_names", "categories"), [
    ("DataVolume", "datavolumes", "Namespaced", ["dv", "dvs"], ["all"]),
    ("DataSource", "datasources", "Namespaced", ["das"], ["all"]),
    ("DataImportCron", "dataimportcrons", "Namespaced", ["dic", "dics"], ["all"]),
    ("StorageProfile", "storageprofiles", "Cluster", None, None),
    ("CDIConfig", "cdiconfigs", "Cluster", None, None),
    ("CDI", "cdis", "Cluster", ["cdi", "cdis"], None),
    ("ObjectTransfer", "objecttransfers", "Cluster", ["ot", "ots"], None),
    ("VolumeImportSource", "volumeimportsources", "Namespaced", None, None),
    ("VolumeUploadSource", "volumeuploadsources", "Namespaced", None, None),
    ("VolumeCloneSource", "volumeclonesources", "Namespaced", None, None),
])
def test_names_and_scope_match_upstream(kind: str, plural: str, scope: str, short_names: list[str] | None,
                                        categories: list[str] | None) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.cdi.kubevirt.io"
    assert crd["spec"]["group"] == "cdi.kubevirt.io"
    assert crd["spec"]["scope"] == scope
    names = crd["spec"]["names"]
    assert (names["plural"], names["singular"], names["listKind"]) == (plural, kind.lower(), f"{kind}List")
    assert names.get("shortNames") == short_names
    assert names.get("categories") == categories


def test_datavolume_printer_columns() -> None:
    assert CRDS["DataVolume"]["spec"]["versions"][0]["additionalPrinterColumns"] == [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
         "description": "The phase the data volume is in"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress",
         "description": "Transfer progress in percentage if known, N/A otherwise"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount",
         "description": "The number of times the transfer has been restarted."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def test_cron_and_cdi_printer_columns() -> None:
    assert CRDS["DataImportCron"]["spec"]["versions"][0]["additionalPrinterColumns"] == [
        {"name": "Format", "type": "string", "jsonPath": ".status.sourceFormat",
         "description": "The format in which created sources are saved"},
    ]
    for version in CRDS["CDI"]["spec"]["versions"]:
        assert version["additionalPrinterColumns"] == [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ]
    assert "additionalPrinterColumns" not in CRDS["StorageProfile"]["spec"]["versions"][0]


def test_status_subresource_exactly_where_upstream_has_one() -> None:
    with_status = {kind for kind, crd in CRDS.items()
                   if any("subresources" in version for version in crd["spec"]["versions"])}
    assert with_status == {"DataVolume", "StorageProfile", "ObjectTransfer"}
    assert CRDS["DataVolume"]["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_cdi_is_stored_as_v1beta1_and_still_served_as_v1alpha1() -> None:
    versions = [(v["name"], v["served"], v["storage"]) for v in CRDS["CDI"]["spec"]["versions"]]
    assert versions == [("v1beta1", True, True), ("v1alpha1", True, False)]
    assert all(len(crd["spec"]["versions"]) == 1 for kind, crd in CRDS.items() if kind != "CDI")


def test_enums_come_from_the_models() -> None:
    dv = schema_of("DataVolume")
    assert at(dv, "spec", "contentType")["enum"] == ["kubevirt", "archive"]
    assert at(dv, "spec", "source", "registry", "pullMethod")["enum"] == ["pod", "node"]
    phases = at(dv, "status", "phase")["enum"]
    assert {"", "Pending", "ImportInProgress", "CSICloneInProgress", "PendingPopulation", "RebindInProgress",
            "Succeeded", "Failed", "Paused", "SmartClonePVCInProgress", "NamespaceTransferInProgress"} <= set(phases)
    assert len(phases) == 23
    assert at(schema_of("StorageProfile"), "spec", "cloneStrategy")["enum"] == ["copy", "snapshot", "csi-clone"]
    assert at(schema_of("DataImportCron"), "spec", "garbageCollect")["enum"] == ["Outdated", "Never"]


def test_limits_and_patterns_come_from_the_models() -> None:
    profile = schema_of("StorageProfile")
    claim_sets = at(profile, "spec", "claimPropertySets")
    assert claim_sets["maxItems"] == 8
    assert at(claim_sets, "[]")["required"] == ["volumeMode"]
    assert at(claim_sets, "[]", "accessModes")["maxItems"] == 4
    assert at(claim_sets, "[]", "accessModes", "[]")["enum"] == [
        "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
    assert at(claim_sets, "[]", "volumeMode")["enum"] == ["Block", "Filesystem"]
    overhead = at(schema_of("CDIConfig"), "spec", "filesystemOverhead")
    assert at(overhead, "global")["pattern"] == r"^(0(?:\.\d{1,3})?|1)$"
    assert overhead["properties"]["storageClass"]["additionalProperties"]["pattern"] == r"^(0(?:\.\d{1,3})?|1)$"
    cron = at(schema_of("DataImportCron"), "spec")
    assert cron["required"] == ["template", "schedule", "managedDataSource"]
    assert at(cron, "importsToKeep") == {"type": "integer", "format": "int32", "minimum": 0}
    assert at(cron, "managedDataSource")["maxLength"] == 63


def test_required_fields() -> None:
    assert schema_of("DataVolume")["required"] == ["spec"]
    assert at(schema_of("DataVolume"), "spec", "source", "pvc")["required"] == ["namespace", "name"]
    assert at(schema_of("DataVolume"), "spec", "sourceRef")["required"] == ["kind", "name"]
    assert "required" not in at(schema_of("DataVolume"), "spec")


def test_opaque_and_int_or_string_fields() -> None:
    infra = at(schema_of("CDI"), "spec", "infra")
    assert at(infra, "affinity") == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert at(infra, "tolerations", "[]")["x-kubernetes-preserve-unknown-fields"] is True
    assert at(schema_of("CDIConfig"), "spec", "tlsSecurityProfile")["x-kubernetes-preserve-unknown-fields"] is True
    size = at(schema_of("DataVolume"), "spec", "storage", "resources", "requests")["additionalProperties"]
    assert size["x-kubernetes-int-or-string"] is True
    assert size["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    template_meta = at(schema_of("DataImportCron"), "spec", "template", "metadata")
    assert template_meta == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert at(schema_of("DataVolume"), "metadata") == {"type": "object"}


def test_import_status_keeps_upstream_capitalised_keys() -> None:
    imports = at(schema_of("DataImportCron"), "status", "currentImports", "[]")
    assert imports["required"] == ["DataVolumeName", "Digest"]


def test_module_prints_the_crds_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == all_crds()


@pytest.mark.parametrize(("typed", "kind"), [
    ("dv", "DataVolume"), ("DataVolumes", "DataVolume"), ("dics", "DataImportCron"), ("das", "DataSource"),
    ("storageprofile", "StorageProfile"), ("cdi", "CDI"), ("utr", "UploadTokenRequest"),
])
def test_kinds_resolve_from_what_users_type(typed: str, kind: str) -> None:
    info = resolve_kind(typed)
    assert info is not None and info.kind == kind


def test_kind_table_answers_what_cdi_get_needs() -> None:
    dv = KINDS["DataVolume"]
    assert (dv.api_version, dv.namespaced, dv.status_subresource) == ("cdi.kubevirt.io/v1beta1", True, True)
    assert [column.name for column in dv.printer_columns] == ["Phase", "Progress", "Restarts", "Age"]
    assert not KINDS["StorageProfile"].namespaced
    assert KINDS["UploadTokenRequest"].api_version == "upload.cdi.kubevirt.io/v1beta1"
    assert resolve_kind("pods") is None
