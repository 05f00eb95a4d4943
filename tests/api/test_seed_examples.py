"""Every CDI manifest in the OpenShift Virtualization docs (sections 6.2.x and chapter 8) is accepted.

The docs seed lives in `shared/seeds/` beside the repository; without it this module is skipped (the
same examples, copied into `tests/api/manifests.py`, are still tested by `test_models.py`). How the
flattened YAML is read back and how `<placeholders>` are filled in is described in
`tests/api/seed_manifests.py`.

Out of scope, on purpose: HyperConverged-only stanzas (insecureRegistries, scratchSpaceStorageClass,
storageWorkloads resources...), and two HyperConverged dataImportCronTemplates fragments that elide
the template's source with `# ...` (listed in `SKIPPED`). The DataImportCrons that are complete in the
HyperConverged examples *are* checked, read as DataImportCron objects. The docs contain no DataSource
manifest (only `sourceRef`s to one).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cdi.api import ObjectMeta, dump_object, parse_model, parse_object, validate, validate_manifest
from cdi.contracts.annotations import ANN_POD_MULTUS_DEFAULT_NETWORK, POD_PASSTHROUGH_ANNOTATIONS
from cdi.embedded import EmbeddedCluster
from tests.api.manifests import FROM_SEED
from tests.api.seed_manifests import SEED_PATH, SeedExample, example_lines, load_examples

if not SEED_PATH.is_file():
    pytest.skip(f"docs seed not found at {SEED_PATH} (expected shared/ beside the repository)",
                allow_module_level=True)

SEED = SEED_PATH.read_text(encoding="utf-8")
CDI = "apiVersion: cdi.kubevirt.io"
CONFIG = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDIConfig", "metadata": {"name": "config"}}

# (example, problems validate_manifest must report: none, except where the docs themselves are wrong)
EXAMPLES: list[tuple[SeedExample, list[str]]] = [
    (SeedExample("registry-template", "6.2.2.4", 'fedora-cloud-container-disk-demo:latest" 5 secretRef',
                 "dataVolumeTemplates:", "DataVolume", as_list=True), []),
    # The docs' web-page example sets both an http and a registry source (callouts 5 and 6 both say
    # "Specify the URL of the web page"); upstream's webhook rejects it, and so do we.
    (SeedExample("http-template", "6.2.3.2", 'Fedora-Cloud-Base-35-1.2.x86_64.qcow2" 5 registry',
                 "dataVolumeTemplates:", "DataVolume", as_list=True),
     ["spec.source: Multiple Data volume sources (http, registry)"]),
    (SeedExample("pvc-clone", "6.2.6.3.1", 'name: "<my_vm_disk>"', CDI, "DataVolume"), []),
    (SeedExample("pvc-clone-template", "6.2.6.3.2", "name: vm-dv-clone 1 spec: running: false",
                 "dataVolumeTemplates:", "DataVolume", as_list=True), []),
    (SeedExample("profile-unrecognized", "8.2.1", "spec: {} status: provisioner: <unknown_provisioner>", CDI,
                 "StorageProfile"), []),
    (SeedExample("profile-claim-properties", "8.2.1", "name: <unknown_provisioner_class> # ... spec: claimPropertySets",
                 CDI, "StorageProfile"), []),
    (SeedExample("profile-clone-strategy", "8.2.1.1", "cloneStrategy: csi-clone 3", CDI, "StorageProfile"), []),
    (SeedExample("cron-centos7", "8.3.2.2", "name: centos7-image-cron", "dataImportCronTemplates:",
                 "DataImportCron", as_list=True), []),
    (SeedExample("profile-snapshot-format", "8.3.2.3", "spec: dataImportCronSourceFormat: snapshot", CDI,
                 "StorageProfile"), []),
    (SeedExample("cron-status-templates", "8.3.4", "name: user-defined-dic", "dataImportCronTemplates:",
                 "DataImportCron", as_list=True), []),
    (SeedExample("config-overhead", "8.4.1", 'filesystemOverhead: global: "<new_global_value>"', "spec:",
                 "CDIConfig", wrapper=CONFIG), []),
    (SeedExample("preallocated", "8.9.2", "name: preallocated-datavolume", CDI, "DataVolume"), []),
    # 8.10.1 shows only the metadata of a DataVolume and elides its spec with "# ...".
    (SeedExample("annotations", "8.10.1", "Multus network annotation example", CDI, "DataVolume"),
     ["spec: required field is missing"]),
]
SPEC_ELIDED = {"annotations"}
# Read from a HyperConverged status listing: their `status` is HCO's (commonTemplate, ...), not a cron's.
HCO_STATUS = {"cron-status-templates"}

SKIPPED = {
    "name: rhel8-image-cron spec: template: spec: storageClassName": "template source elided",
    "dataimportcrontemplate.kubevirt.io/enable: 'false'": "only the template's metadata is shown",
}


def _ids(examples: list[tuple[SeedExample, list[str]]]) -> list[str]:
    return [f"{example.section}-{example.name}" for example, _ in examples]


@pytest.mark.parametrize(("example", "problems"), EXAMPLES, ids=_ids(EXAMPLES))
def test_docs_example_is_admitted(example: SeedExample, problems: list[str]) -> None:
    for doc in load_examples(SEED, example):
        assert validate_manifest(doc) == problems


@pytest.mark.parametrize(("example", "problems"), EXAMPLES, ids=_ids(EXAMPLES))
def test_docs_example_round_trips(example: SeedExample, problems: list[str]) -> None:
    for doc in load_examples(SEED, example):
        if example.name in SPEC_ELIDED:
            assert dump_object(parse_model(ObjectMeta, doc["metadata"])) == doc["metadata"]
        else:
            assert dump_object(parse_object(doc)) == doc


@pytest.mark.parametrize("name", sorted(FROM_SEED))
def test_table_copies_match_the_docs(name: str) -> None:
    example = next(example for example, _ in EXAMPLES if example.name == name)
    assert load_examples(SEED, example)[0] == FROM_SEED[name]


def test_two_boot_sources_are_read_from_the_status_example() -> None:
    example = next(example for example, _ in EXAMPLES if example.name == "cron-status-templates")
    crons = [parse_object(doc) for doc in load_examples(SEED, example)]
    assert [cron.name for cron in crons] == ["centos-7-image-cron", "user-defined-dic"]
    assert all(validate(cron) == [] for cron in crons)


def test_annotation_example_uses_a_pass_through_pod_annotation() -> None:
    example = next(example for example, _ in EXAMPLES if example.name == "annotations")
    [doc] = load_examples(SEED, example)
    assert doc["metadata"]["annotations"] == {ANN_POD_MULTUS_DEFAULT_NETWORK: "bridge-network"}
    assert ANN_POD_MULTUS_DEFAULT_NETWORK in POD_PASSTHROUGH_ANNOTATIONS


def test_every_cdi_example_in_scope_is_covered() -> None:
    """Each seed line holding a CDI object in 6.2 and chapter 8 is read by an example or skipped."""
    lines = SEED.splitlines()
    in_scope = [*_section(lines, "6.2. Creating VMs from custom images", "6.3. "),
                *_section(lines, "Chapter 8. Storage", "Chapter 9. ")]
    markers = ("cdi.kubevirt.io/v1beta1", "dataVolumeTemplates:", "dataImportCronTemplates:")
    relevant = {i for i in in_scope if any(marker in lines[i] for marker in markers)}
    covered = {i for example, _ in EXAMPLES for i in example_lines(SEED, example)}
    skipped = {i for i in in_scope if any(anchor in lines[i] for anchor in SKIPPED)}
    assert relevant - covered - skipped == set()


def _section(lines: list[str], start: str, end: str) -> range:
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i, line in enumerate(lines) if i > first and line.startswith(end))
    return range(first, last)


@pytest.mark.parametrize(("example", "problems"), [(e, p) for e, p in EXAMPLES if not p], ids=_ids(
    [(e, p) for e, p in EXAMPLES if not p]))
async def test_docs_example_is_stored_under_strict_admission(example: SeedExample, problems: list[str],
                                                             tmp_path: Path) -> None:
    """The store's admission (strict decoding, webhook rules) takes each example as written."""
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        for doc in load_examples(SEED, example):
            kind = cluster.kinds.lookup(doc["apiVersion"], doc["kind"])
            doc = copy.deepcopy(doc)
            doc["metadata"].setdefault("name", "from-the-docs")  # fragments show no name
            if example.name in HCO_STATUS:
                del doc["status"]  # HyperConverged's status wrapper (commonTemplate ...), not the cron's
            if kind.namespaced:
                doc["metadata"].setdefault("namespace", "default")
            stored = await cluster.create(doc)
            assert stored["spec"] == doc["spec"]
