"""Admission: each upstream rule, one bad manifest each, and the message a user would see."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cdi.api import parse_object, validate_manifest, validate_update
from tests.api.manifests import FROM_SEED, HAND_WRITTEN

V1 = "cdi.kubevirt.io/v1beta1"
SIZE = {"resources": {"requests": {"storage": "1Gi"}}}
REGISTRY = {"registry": {"url": "docker://quay.io/containerdisks/fedora:40"}}
RWO_PVC = {"accessModes": ["ReadWriteOnce"], **SIZE}


def dv(spec: dict[str, Any], name: str = "disk") -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "DataVolume", "metadata": {"name": name}, "spec": spec}


def imported(source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return dv({"source": source, "storage": SIZE, **spec})


def cron(spec: dict[str, Any], name: str = "fedora-cron") -> dict[str, Any]:
    base = {"template": {"spec": {"source": REGISTRY, "storage": SIZE}}, "schedule": "0 */12 * * *",
            "managedDataSource": "fedora"}
    return {"apiVersion": V1, "kind": "DataImportCron", "metadata": {"name": name}, "spec": {**base, **spec}}


def profile(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "StorageProfile", "metadata": {"name": "local"}, "spec": spec}


def config(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "CDIConfig", "metadata": {"name": "config"}, "spec": spec}


def import_source(spec: dict[str, Any], name: str = "volume-import-source-1") -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "VolumeImportSource", "metadata": {"name": name}, "spec": spec}


def transfer(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "ObjectTransfer", "metadata": {"name": "move"},
            "spec": {"source": source, "target": target}}


HTTP_URL = "https://example.com/disk.qcow2"
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # --- DataVolume: target
    ("no pvc or storage", dv({"source": REGISTRY}), ["spec: Missing Data volume PVC"]),
    ("pvc and storage", dv({"source": REGISTRY, "pvc": RWO_PVC, "storage": SIZE}),
     ["spec: Duplicate storage definition, both target storage and target pvc defined"]),
    ("pvc without access mode", dv({"source": REGISTRY, "pvc": SIZE}),
     ["spec.pvc.accessModes: Required value: at least 1 access mode is required"]),
    ("pvc with two access modes", dv({"source": REGISTRY, "pvc": {**SIZE, "accessModes": ["ReadWriteOnce",
                                                                                          "ReadOnlyMany"]}}),
     ["spec.pvc.accessModes: PVC multiple accessModes"]),
    ("pvc with unknown access mode", dv({"source": REGISTRY, "pvc": {**SIZE, "accessModes": ["RWO"]}}),
     ['spec.pvc.accessModes: Unsupported value: "RWO": supported values: "ReadOnlyMany", "ReadWriteMany", '
      '"ReadWriteOnce", "ReadWriteOncePod"']),
    ("storage with unknown access mode", dv({"source": REGISTRY, "storage": {**SIZE, "accessModes": ["Shared"]}}),
     ['spec.storage.accessModes: Unsupported value: "Shared": supported values: "ReadOnlyMany", '
      '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"']),
    ("pvc without size", dv({"source": REGISTRY, "pvc": {"accessModes": ["ReadWriteOnce"]}}),
     ["spec.pvc.resources.requests.storage: PVC size is missing"]),
    ("pvc of zero size", dv({"source": REGISTRY, "pvc": {"accessModes": ["ReadWriteOnce"],
                                                          "resources": {"requests": {"storage": "0"}}}}),
     ["spec.pvc.resources.requests.storage: PVC size can't be equal or less than zero"]),
    ("storage below 1MiB", dv({"source": REGISTRY, "storage": {"resources": {"requests": {"storage": "1000Ki"}}}}),
     ["spec.storage.resources.requests.storage: Storage size should be at least 1MiB, got 1000Ki"]),
    ("import into storage without size", dv({"source": REGISTRY, "storage": {}}),
     ["spec.storage.resources.requests.storage: Storage size is missing"]),
    ("pvc clone into storage may omit size", dv({"source": {"pvc": {"namespace": "a", "name": "b"}}, "storage": {}}),
     []),
    ("snapshot clone may omit size", dv({"source": {"snapshot": {"namespace": "a", "name": "b"}}, "storage": {}}),
     []),
    ("sourceRef may omit size", dv({"sourceRef": {"kind": "DataSource", "name": "rhel9"}, "storage": {}}), []),
    ("clone into pvc still needs a size", dv({"source": {"pvc": {"namespace": "a", "name": "b"}},
                                              "pvc": {"accessModes": ["ReadWriteOnce"]}}),
     ["spec.pvc.resources.requests.storage: PVC size is missing"]),
    ("storage class name too long", dv({"source": REGISTRY, "storage": {**SIZE, "storageClassName": "s" * 254}}),
     ["spec.storage.storageClassName: must be no more than 253 characters"]),
    ("name too long", dv({"source": REGISTRY, "storage": SIZE}, name="d" * 254),
     ["metadata.name: Name of data volume cannot be more than 253 characters"]),
    # --- DataVolume: source choice
    ("no source", dv({"storage": SIZE}), ["spec: Data volume should have either Source or SourceRef"]),
    ("source and sourceRef", dv({"source": REGISTRY, "sourceRef": {"kind": "DataSource", "name": "x"},
                                 "storage": SIZE}),
     ["spec: Data volume should have either Source or SourceRef"]),
    ("empty source", imported({}), ["spec.source: Missing Data volume source"]),
    ("two sources", imported({"http": {"url": HTTP_URL}, **REGISTRY}),
     ["spec.source: Multiple Data volume sources (http, registry)"]),
    ("sourceRef to a PVC", dv({"sourceRef": {"kind": "PersistentVolumeClaim", "name": "x"}, "storage": SIZE}),
     ["spec.sourceRef.kind: Unsupported sourceRef kind PersistentVolumeClaim, currently only DataSource is "
      "supported"]),
    ("sourceRef without kind", dv({"sourceRef": {"kind": "", "name": "x"}, "storage": SIZE}),
     ["spec.sourceRef.kind: Missing sourceRef kind"]),
    ("sourceRef without name", dv({"sourceRef": {"kind": "DataSource", "name": ""}, "storage": SIZE}),
     ["spec.sourceRef.name: Missing sourceRef name"]),
    ("unknown content type", imported(REGISTRY, contentType="iso"),
     ["spec.contentType: must be one of 'kubevirt' or 'archive', got 'iso'"]),
    # --- DataVolume: URL sources
    ("http with ftp scheme", imported({"http": {"url": "ftp://example.com/disk.img"}}),
     ["spec.source.http.url: Invalid source URL scheme: ftp://example.com/disk.img (use one of http, https, gs)"]),
    ("http with relative URL", imported({"http": {"url": "disk.img"}}),
     ["spec.source.http.url: Invalid source URL: disk.img"]),
    ("http with empty URL", imported({"http": {"url": ""}}), ["spec.source.http.url: source URL is empty"]),
    ("http without URL", imported({"http": {}}), ["spec.source.http.url: required field is missing"]),
    ("s3 with s3 scheme", imported({"s3": {"url": "s3://bucket/disk.img"}}),
     ["spec.source.s3.url: Invalid source URL scheme: s3://bucket/disk.img (use one of http, https, gs)"]),
    ("gcs with gs scheme", imported({"gcs": {"url": "gs://bucket/disk.img"}}), []),
    ("gcs with file scheme", imported({"gcs": {"url": "file:///disk.img"}}),
     ["spec.source.gcs.url: Invalid source URL scheme: file:///disk.img (use one of http, https, gs)"]),
    # --- DataVolume: checksum
    ("checksum without algorithm",
     imported({"http": {"url": HTTP_URL, "checksum": "d41d8cd98f00b204e9800998ecf8427e"}}),
     ["spec.source.http.checksum: checksum 'd41d8cd98f00b204e9800998ecf8427e' must be <algorithm>:<hex digest> "
      "with algorithm one of md5, sha1, sha256, sha512"]),
    ("checksum of wrong length", imported({"http": {"url": HTTP_URL, "checksum": "sha256:d41d8cd98f00b204"}}),
     ["spec.source.http.checksum: sha256 checksum must be 64 hexadecimal characters, got 'd41d8cd98f00b204'"]),
    ("checksum not hex", imported({"http": {"url": HTTP_URL, "checksum": "md5:" + "z" * 32}}),
     [f"spec.source.http.checksum: md5 checksum must be 32 hexadecimal characters, got '{'z' * 32}'"]),
    ("sha1 checksum", imported({"http": {"url": HTTP_URL, "checksum": "sha1:" + "a" * 40}}), []),
    ("sha512 checksum", imported({"http": {"url": HTTP_URL, "checksum": "sha512:" + "F" * 128}}), []),
    # --- DataVolume: registry
    ("registry with url and imageStream", imported({"registry": {"url": "docker://q/x", "imageStream": "x",
                                                                "pullMethod": "node"}}),
     ["spec.source.registry: Source registry should have either URL or ImageStream"]),
    ("registry with neither", imported({"registry": {}}),
     ["spec.source.registry: Source registry should have either URL or ImageStream"]),
    ("registry with http URL", imported({"registry": {"url": "https://quay.io/x"}}),
     ["spec.source.registry.url: Illegal registry source URL scheme https://quay.io/x (use docker:// or "
      "oci-archive://)"]),
    ("registry oci-archive", imported({"registry": {"url": "oci-archive:///images/disk.tar"}}), []),
    ("image stream pulled by pod", imported({"registry": {"imageStream": "fedora"}}),
     ["spec.source.registry.pullMethod: Source registry ImageStream is supported only with node pull import "
      "method"]),
    ("image stream pulled by node", imported({"registry": {"imageStream": "fedora", "pullMethod": "node"}}), []),
    ("empty image stream", imported({"registry": {"imageStream": "", "pullMethod": "node"}}),
     ["spec.source.registry.imageStream: Source registry ImageStream is not valid"]),
    ("unknown pull method", imported({"registry": {"url": "docker://q/x", "pullMethod": "kubelet"}}),
     ["spec.source.registry.pullMethod: must be one of 'pod' or 'node', got 'kubelet'"]),
    ("registry archive", imported(REGISTRY, contentType="archive"),
     ["spec.contentType: ContentType must be kubevirt when Source is Registry"]),
    # --- DataVolume: blank, imageio, vddk, clone sources
    ("blank archive", imported({"blank": {}}, contentType="archive"),
     ["spec.contentType: SourceType cannot be blank and the contentType be archive"]),
    ("imageio without credentials", imported({"imageio": {"url": "https://engine/api", "diskId": "d1"}}),
     ["spec.source.imageio: source Imageio is not valid, missing secretRef, certConfigMap"]),
    ("imageio skipping TLS needs no CA", imported({"imageio": {"url": "https://engine/api", "diskId": "d1",
                                                              "secretRef": "s", "insecureSkipVerify": True}}), []),
    ("vddk missing fields", imported({"vddk": {"url": "https://vcenter", "secretRef": "s"}}),
     ["spec.source.vddk: source VDDK is not valid, missing uuid, backingFile, thumbprint"]),
    ("pvc source without namespace", imported({"pvc": {"name": "golden"}}),
     ["spec.source.pvc.namespace: required field is missing"]),
    ("pvc source with empty name", imported({"pvc": {"namespace": "golden", "name": ""}}),
     ["spec.source.pvc: source PVC is not valid, missing name"]),
    ("snapshot source with empty namespace", imported({"snapshot": {"namespace": "", "name": "snap"}}),
     ["spec.source.snapshot: source Snapshot is not valid, missing namespace"]),
    # --- DataVolume: external population
    ("populator with a CDI source", dv({"source": REGISTRY, "storage": {**SIZE, "dataSourceRef": {
        "apiGroup": "example.io", "kind": "Populator", "name": "p"}}}),
     ["spec: External population is incompatible with Source and SourceRef"]),
    ("populator without apiGroup", dv({"storage": {**SIZE, "dataSourceRef": {"kind": "Populator", "name": "p"}}}),
     ["spec.storage.dataSourceRef.apiGroup: required for kind Populator"]),
    ("populator in another namespace", dv({"pvc": {**RWO_PVC, "dataSourceRef": {
        "apiGroup": "example.io", "kind": "Populator", "name": "p", "namespace": "other"}}}),
     ["spec.pvc.dataSourceRef.namespace: cross-namespace population is not supported"]),
    ("dataSource and dataSourceRef differ", dv({"storage": {**SIZE, "dataSource": {
        "kind": "PersistentVolumeClaim", "name": "a"}, "dataSourceRef": {"kind": "PersistentVolumeClaim",
                                                                         "name": "b"}}}),
     ["spec.storage: dataSource and dataSourceRef must refer to the same object"]),
    ("populated by a PVC data source", dv({"storage": {**SIZE, "dataSource": {"kind": "PersistentVolumeClaim",
                                                                              "name": "a"}}}), []),
    # --- DataImportCron
    ("cron with a four-field schedule", cron({"schedule": "0 12 * *"}),
     ["spec.schedule: Illegal cron schedule '0 12 * *': expected 5 fields (minute hour day-of-month month "
      "day-of-week), got 4"]),
    ("cron with minute 60", cron({"schedule": "60 * * * *"}),
     ["spec.schedule: Illegal cron schedule '60 * * * *': minute: 60 is outside 0-59"]),
    ("cron with empty schedule never polls", cron({"schedule": ""}), []),
    ("cron with descriptor", cron({"schedule": "@daily"}), []),
    ("cron without managed DataSource", cron({"managedDataSource": ""}),
     ["spec.managedDataSource: Illegal ManagedDataSource value (it must name a DataSource)"]),
    ("cron missing managed DataSource", {**cron({}), "spec": {k: v for k, v in cron({})["spec"].items()
                                                              if k != "managedDataSource"}},
     ["spec.managedDataSource: required field is missing"]),
    ("cron managed DataSource too long", cron({"managedDataSource": "m" * 64}),
     ["spec.managedDataSource: must be at most 63 characters"]),
    ("cron keeping -1 imports", cron({"importsToKeep": -1}), ["spec.importsToKeep: must be at least 0, got -1"]),
    ("cron with unknown garbage collection", cron({"garbageCollect": "Always"}),
     ["spec.garbageCollect: must be one of 'Outdated' or 'Never', got 'Always'"]),
    ("cron importing over http (beyond upstream)", cron({"template": {"spec": {"source": {"http": {"url": HTTP_URL}},
                                                                               "storage": SIZE}}}), []),
    ("cron importing a blank disk", cron({"template": {"spec": {"source": {"blank": {}}, "storage": SIZE}}}),
     ["spec.template.spec.source: Missing registry, pvc, http or s3 source (a DataImportCron imports from a "
      "registry, a PVC, an HTTP(S) URL or an S3 object)"]),
    ("cron from a PVC", cron({"template": {"spec": {"source": {"pvc": {"namespace": "a", "name": "b"}},
                                                    "storage": {}}}}), []),
    ("cron template with contentType", cron({"template": {"spec": {"source": REGISTRY, "storage": SIZE,
                                                                   "contentType": "kubevirt"}}}),
     ["spec.template.spec: Unsettable fields: contentType"]),
    ("cron template with sourceRef", cron({"template": {"spec": {"sourceRef": {"kind": "DataSource", "name": "x"},
                                                                 "storage": SIZE}}}),
     ["spec.template.spec.source: Missing registry, pvc, http or s3 source (a DataImportCron imports from a "
      "registry, a PVC, an HTTP(S) URL or an S3 object)", "spec.template.spec: Unsettable fields: sourceRef"]),
    ("cron template without size", cron({"template": {"spec": {"source": REGISTRY, "storage": {}}}}),
     ["spec.template.spec.storage.resources.requests.storage: Storage size is missing"]),
    ("cron name too long", cron({}, name="c" * 64), ["metadata.name: Name cannot be longer than 63 characters"]),
    # --- StorageProfile
    ("nine claim property sets", profile({"claimPropertySets": [{"volumeMode": "Block"}] * 9}),
     ["spec.claimPropertySets: must have at most 8 items"]),
    ("five access modes", profile({"claimPropertySets": [{"volumeMode": "Block", "accessModes": [
        "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod", "ReadWriteOnce"]}]}),
     ["spec.claimPropertySets[0].accessModes: must have at most 4 items"]),
    ("illegal access mode", profile({"claimPropertySets": [{"volumeMode": "Block", "accessModes": ["RWX"]}]}),
     ["spec.claimPropertySets[0].accessModes[0]: must be one of 'ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany' "
      "or 'ReadWriteOncePod', got 'RWX'"]),
    ("claim property set without volume mode", profile({"claimPropertySets": [{"accessModes": ["ReadWriteOnce"]}]}),
     ["spec.claimPropertySets[0].volumeMode: required field is missing"]),
    ("volume mode from the profile itself", profile({"claimPropertySets": [{"volumeMode": "FromStorageProfile"}]}),
     ["spec.claimPropertySets[0].volumeMode: must be one of 'Block' or 'Filesystem', got 'FromStorageProfile'"]),
    ("unknown clone strategy", profile({"cloneStrategy": "rsync"}),
     ["spec.cloneStrategy: must be one of 'copy', 'snapshot' or 'csi-clone', got 'rsync'"]),
    # --- CDIConfig
    ("overhead with four decimals", config({"filesystemOverhead": {"global": "0.0555"}}),
     ['spec.filesystemOverhead.global: must be a fraction from 0 to 1 with at most three decimals, such as '
      '"0.06"; got \'0.0555\'']),
    ("overhead above one", config({"filesystemOverhead": {"storageClass": {"local": "1.5"}}}),
     ['spec.filesystemOverhead.storageClass.local: must be a fraction from 0 to 1 with at most three decimals, '
      'such as "0.06"; got \'1.5\'']),
    ("overhead of one", config({"filesystemOverhead": {"global": "1", "storageClass": {"a": "0"}}}), []),
    ("unknown PVC rendering mode", config({"webhookPvcRendering": "Sometimes"}),
     ["spec.webhookPvcRendering: must be one of 'Enabled' or 'Disabled', got 'Sometimes'"]),
    # --- DataSource
    ("DataSource pointing at itself", {"apiVersion": V1, "kind": "DataSource",
                                       "metadata": {"name": "fedora", "namespace": "golden"},
                                       "spec": {"source": {"dataSource": {"namespace": "golden", "name": "fedora"}}}},
     ["spec.source.dataSource: DataSource cannot point to itself"]),
    ("DataSource waiting for its first import", {"apiVersion": V1, "kind": "DataSource",
                                                 "metadata": {"name": "fedora"}, "spec": {"source": {}}}, []),
    # --- Populator sources
    ("import source without source", import_source({}), ["spec.source: Missing VolumeImport source"]),
    ("import source with two sources", import_source({"source": {"blank": {}, **REGISTRY}}),
     ["spec.source: Multiple VolumeImport sources (registry, blank)"]),
    ("warm import without target claim", import_source({"source": {"vddk": {
        "url": "https://vcenter", "uuid": "u", "backingFile": "b", "thumbprint": "t", "secretRef": "s"}},
        "checkpoints": [{"previous": "", "current": "c1"}]}),
     ["spec.targetClaim: Unable to do multi-stage import without specifying a target claim"]),
    ("import source with bad URL", import_source({"source": {"http": {"url": "ftp://x/y"}}}),
     ["spec.source.http.url: Invalid source URL scheme: ftp://x/y (use one of http, https, gs)"]),
    # --- ObjectTransfer
    ("transfer without target", transfer({"kind": "PersistentVolumeClaim", "namespace": "a", "name": "b"}, {}),
     ["spec.target: Target namespace and/or target name must be supplied"]),
    ("transfer of a Pod", transfer({"kind": "Pod", "namespace": "a", "name": "b"}, {"namespace": "c"}),
     ["spec.source.kind: Unsupported kind 'Pod' (use DataVolume or PersistentVolumeClaim)"]),
    ("transfer of a DataVolume", transfer({"kind": "DataVolume", "namespace": "a", "name": "b"}, {"name": "c"}),
     []),
    ("import source name too long", import_source({"source": {"blank": {}}}, name="v" * 64),
     ["metadata.name: Name cannot be longer than 63 characters"]),
]


@pytest.mark.parametrize(("manifest", "expected"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_admission(manifest: dict[str, Any], expected: list[str]) -> None:
    assert validate_manifest(manifest) == expected


def test_independent_problems_are_all_reported() -> None:
    manifest = dv({"source": {"http": {"url": "ftp://x/y"}}, "pvc": {"accessModes": ["ReadWriteOnce"]}},
                  name="n" * 300)
    assert validate_manifest(manifest) == [
        "metadata.name: Name of data volume cannot be more than 253 characters",
        "spec.pvc.resources.requests.storage: PVC size is missing",
        "spec.source.http.url: Invalid source URL scheme: ftp://x/y (use one of http, https, gs)",
    ]


def test_spec_of_a_datavolume_cannot_change() -> None:
    old = parse_object(FROM_SEED["preallocated"])
    changed = copy.deepcopy(FROM_SEED["preallocated"])
    changed["spec"]["preallocation"] = False
    assert validate_update(old, parse_object(changed)) == ["spec: Cannot update DataVolume Spec"]


def test_status_and_metadata_of_a_datavolume_may_change() -> None:
    old = parse_object(FROM_SEED["preallocated"])
    changed = copy.deepcopy(FROM_SEED["preallocated"])
    changed["metadata"]["labels"] = {"team": "storage"}
    changed["status"] = {"phase": "Succeeded", "progress": "100.0%"}
    assert validate_update(old, parse_object(changed)) == []


def test_warm_import_may_add_checkpoints() -> None:
    old = parse_object(HAND_WRITTEN["dv-vddk-warm"])
    changed = copy.deepcopy(HAND_WRITTEN["dv-vddk-warm"])
    changed["spec"]["checkpoints"].append({"previous": "snapshot-1", "current": "snapshot-2"})
    changed["spec"]["finalCheckpoint"] = True
    assert validate_update(old, parse_object(changed)) == []
    changed["spec"]["source"]["vddk"]["uuid"] = "another-vm"
    assert validate_update(old, parse_object(changed)) == ["spec: Cannot update DataVolume Spec"]


def test_spec_of_a_cron_cannot_change() -> None:
    old = parse_object(FROM_SEED["cron-centos7"])
    changed = copy.deepcopy(FROM_SEED["cron-centos7"])
    changed["spec"]["schedule"] = "0 0 * * *"
    assert validate_update(old, parse_object(changed)) == ["spec: Cannot update DataImportCron Spec"]


def test_storage_profile_spec_may_change() -> None:
    old = parse_object(FROM_SEED["profile-claim-properties"])
    changed = copy.deepcopy(FROM_SEED["profile-claim-properties"])
    changed["spec"]["cloneStrategy"] = "copy"
    assert validate_update(old, parse_object(changed)) == []
