"""Parsing and writing manifests: nothing lost, nothing invented, errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cdi.api import (
    KINDS,
    AccessMode,
    Condition,
    ConditionStatus,
    ContentType,
    DataImportCron,
    DataVolume,
    DataVolumePhase,
    DataVolumeSpec,
    GarbageCollect,
    ManifestError,
    ObjectMeta,
    PullMethod,
    StorageProfile,
    dump_object,
    parse_object,
    validate_manifest,
)
from cdi.api.openapi import Schema, structural_schema
from cdi.quantity import parse_quantity
from tests.api.manifests import ALL_VALID, FROM_SEED, HAND_WRITTEN


@pytest.mark.parametrize("name", sorted(ALL_VALID))
def test_valid_manifest_is_admitted(name: str) -> None:
    assert validate_manifest(ALL_VALID[name]) == []


@pytest.mark.parametrize("name", sorted(ALL_VALID))
def test_manifest_round_trips_exactly(name: str) -> None:
    doc = ALL_VALID[name]
    assert dump_object(parse_object(copy.deepcopy(doc))) == doc


@pytest.mark.parametrize("name", sorted(ALL_VALID))
def test_unknown_fields_survive_at_every_level(name: str) -> None:
    doc = ALL_VALID[name]
    schema = structural_schema(KINDS[doc["kind"]].model)
    decorated = _with_unknown_fields(doc, schema)
    assert decorated != doc
    assert dump_object(parse_object(copy.deepcopy(decorated))) == decorated


def test_defaults_are_readable_but_never_written() -> None:
    dv = parse_object(FROM_SEED["preallocated"])
    assert isinstance(dv, DataVolume)
    assert dv.spec.content_type == ContentType.KUBEVIRT
    assert dv.spec.source is not None and dv.spec.source.registry is not None
    assert dv.spec.source.registry.pull_method == PullMethod.POD
    assert dv.status.phase == DataVolumePhase.UNSET
    written = dump_object(dv)
    assert "contentType" not in written["spec"]
    assert "pullMethod" not in written["spec"]["source"]["registry"]
    assert "status" not in written


def test_cron_defaults_follow_upstream() -> None:
    cron = parse_object(FROM_SEED["cron-centos7"])
    assert isinstance(cron, DataImportCron)
    assert cron.spec.imports_to_keep == 3
    assert cron.spec.garbage_collect == GarbageCollect.OUTDATED
    assert "importsToKeep" not in dump_object(cron)["spec"]


def test_status_changed_in_place_is_written() -> None:
    dv = parse_object(FROM_SEED["pvc-clone"])
    assert isinstance(dv, DataVolume)
    dv.status.phase = DataVolumePhase.CLONE_IN_PROGRESS
    dv.status.conditions.append(Condition(type="Bound", status=ConditionStatus.TRUE, reason="Bound"))
    assert dump_object(dv)["status"] == {
        "phase": "CloneInProgress",
        "conditions": [{"type": "Bound", "status": "True", "reason": "Bound"}],
    }


def test_object_built_in_code_carries_api_version_and_kind() -> None:
    dv = DataVolume(metadata=ObjectMeta(name="blank"), spec=DataVolumeSpec.model_validate(
        {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}))
    assert dump_object(dv) == {
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": {"name": "blank"},
        "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
    }
    assert validate_manifest(dump_object(dv)) == []


def test_snake_case_key_is_an_unknown_field_not_the_field() -> None:
    doc = copy.deepcopy(FROM_SEED["preallocated"])
    doc["spec"]["content_type"] = "archive"
    dv = parse_object(doc)
    assert isinstance(dv, DataVolume)
    assert dv.spec.content_type == ContentType.KUBEVIRT
    assert dump_object(dv) == doc


def test_quantities_keep_their_spelling_and_convert_to_bytes() -> None:
    dv = parse_object(HAND_WRITTEN["dv-http-pvc-with-status"])
    assert isinstance(dv, DataVolume) and dv.spec.pvc is not None
    size = dv.spec.pvc.resources.storage_request
    assert size == "1Gi"
    assert size is not None and parse_quantity(size) == 1024**3


def test_integer_quantity_stays_an_integer() -> None:
    doc = copy.deepcopy(FROM_SEED["preallocated"])
    doc["spec"]["storage"]["resources"]["requests"]["storage"] = 2147483648
    assert dump_object(parse_object(doc)) == doc


def test_upstream_capitalised_status_keys_round_trip() -> None:
    doc = copy.deepcopy(FROM_SEED["cron-centos7"])
    doc["status"] = {"currentImports": [{"DataVolumeName": "centos7-1a2b3c4d5e6f", "Digest": "sha256:1a2b"}],
                     "lastImportedPVC": {"namespace": "golden", "name": "centos7-0a1b"}, "sourceFormat": "pvc"}
    cron = parse_object(doc)
    assert isinstance(cron, DataImportCron)
    assert cron.status.current_imports[0].data_volume_name == "centos7-1a2b3c4d5e6f"
    assert dump_object(cron) == doc


def test_storage_profile_access_modes_are_typed() -> None:
    profile = parse_object(FROM_SEED["profile-claim-properties"])
    assert isinstance(profile, StorageProfile)
    assert profile.spec.claim_property_sets[0].access_modes == [AccessMode.READ_WRITE_ONCE]


@pytest.mark.parametrize(("doc", "message"), [
    ({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolumes", "spec": {}},
     "kind: unknown kind 'DataVolumes'"),
    ({"apiVersion": "cdi.kubevirt.io/v1alpha1", "kind": "DataVolume", "spec": {}},
     "apiVersion: DataVolume is served as cdi.kubevirt.io/v1beta1, not 'cdi.kubevirt.io/v1alpha1'"),
    ({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume"}, "spec: required field is missing"),
    ({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "spec": {"storage": {"resources": {
        "requests": {"storage": "ten gigs"}}}}},
     "spec.storage.resources.requests.storage: quantities must match the regular expression"),
])
def test_schema_errors_name_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as raised:
        parse_object(doc)
    assert raised.value.messages[0].startswith(message)


def test_all_schema_errors_are_reported_together() -> None:
    doc = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
           "metadata": {"labels": {"tier": 1}},
           "spec": {"contentType": "iso", "preallocation": "yes"}}
    assert validate_manifest(doc) == [
        "metadata.labels.tier: must be a string, got 1",
        "spec.contentType: must be one of 'kubevirt' or 'archive', got 'iso'",
        "spec.preallocation: must be true or false, got 'yes'",
    ]


def test_cdi_is_also_served_as_v1alpha1() -> None:
    doc = copy.deepcopy(HAND_WRITTEN["cdi"])
    doc["apiVersion"] = "cdi.kubevirt.io/v1alpha1"
    assert dump_object(parse_object(doc)) == doc


def _with_unknown_fields(doc: Any, schema: Schema) -> Any:
    """A copy of `doc` with an unknown field added to every mapping that has a fixed set of fields."""
    if isinstance(doc, list):
        return [_with_unknown_fields(item, schema.get("items", {})) for item in doc]
    if not isinstance(doc, dict) or not schema.get("properties"):
        return doc
    props = schema["properties"]
    if "metadata" in props and "spec" in props:
        props = {**props, "metadata": structural_schema(ObjectMeta)}
    out = {key: _with_unknown_fields(value, props.get(key, {})) for key, value in doc.items()}
    out["futureField"] = {"nested": [1, "two", {"three": None}]}
    return out


DEFERRED_BUILD_PROBE = """
import json
from cdi.api import CDI, DataVolume, ManifestError, dump_object, parse_object
before = (DataVolume.__pydantic_complete__, CDI.__pydantic_complete__)
manifest = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": "disk", "namespace": "vms"},
            "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}
dumped = dump_object(parse_object(manifest))
try:
    parse_object({**manifest, "spec": {**manifest["spec"], "contentType": 7}})
    refused = ""
except ManifestError as e:
    refused = str(e)
print(json.dumps({"before": before, "after": (DataVolume.__pydantic_complete__, CDI.__pydantic_complete__),
                  "same": dumped == manifest, "refused": refused}))
"""


def test_a_model_is_built_on_first_use_and_then_parses_and_refuses_as_before() -> None:
    """`import cdi.api` builds no validator (the CLI's start-up); the first parse builds what it needs."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", DEFERRED_BUILD_PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout)
    assert seen["before"] == [False, False]
    assert seen["after"] == [True, False]
    assert seen["same"] is True
    assert "contentType" in seen["refused"]


BUILD_ALL_PROBE = """
import json
from cdi.api import ApiModel, DataVolume, build_models, parse_object

def models(base):
    for model in base.__subclasses__():
        yield model
        yield from models(model)

before = sum(1 for m in set(models(ApiModel)) if m.__pydantic_complete__)
built = build_models()
incomplete = sorted(m.__name__ for m in set(models(ApiModel)) if not m.__pydantic_complete__)
dv = parse_object({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "metadata": {"name": "d"},
                   "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})
print(json.dumps({"before": before, "built": built, "incomplete": incomplete,
                  "total": len(set(models(ApiModel))), "parsed": isinstance(dv, DataVolume)}))
"""


def test_build_models_builds_every_model_up_front() -> None:
    """Long-running processes build every model at start (`Manager(freeze_heap=True)`), not on the event
    loop at their first object."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", BUILD_ALL_PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout)
    assert seen["before"] == 0
    assert seen["built"] == seen["total"] > 50
    assert seen["incomplete"] == []
    assert seen["parsed"] is True
