"""`cdi apply` / `cdi create`: admission, kubectl's created/configured/unchanged, immutability, errors."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cdi.cli.apply import apply_object, resolve_target
from cdi.cli.manifests import parse_manifests
from cdi.cluster.protocol import Object
from cdi.embedded import EmbeddedCluster
from tests.api.manifests import FROM_SEED_YAML, HAND_WRITTEN_YAML
from tests.cli.conftest import Run
from tests.cli.manifests import BLANK_DV, HTTP_DV, INVALID_DV

WriteFile = Callable[[str, str], str]


def test_apply_creates_then_reports_unchanged(cdi: Run, write_file: WriteFile) -> None:
    path = write_file("dvs.yaml", HTTP_DV + "---\n" + BLANK_DV)
    first = cdi("apply", "-f", path)
    assert (first.code, first.out, first.err) == (
        0, "datavolume.cdi.kubevirt.io/fedora created\ndatavolume.cdi.kubevirt.io/blank-dv created\n", "")
    again = cdi("apply", "-f", path)
    assert again.out == "datavolume.cdi.kubevirt.io/fedora unchanged\ndatavolume.cdi.kubevirt.io/blank-dv unchanged\n"
    shown = cdi("get", "dv", "fedora", "-o", "yaml")
    assert "namespace: default" in shown.out and "storage: 10Gi" in shown.out


def test_apply_merges_labels_and_drops_the_ones_removed(cdi: Run, write_file: WriteFile) -> None:
    cdi("apply", "-f", write_file("dv.yaml", HTTP_DV))
    relabelled = HTTP_DV.replace("    app: vm\n", "    app: vm2\n    tier: gold\n")
    result = cdi("apply", "-f", write_file("dv2.yaml", relabelled))
    assert result.out == "datavolume.cdi.kubevirt.io/fedora configured\n"
    assert cdi("get", "dv", "-l", "app=vm2,tier=gold", "-o", "name").out == "datavolume.cdi.kubevirt.io/fedora\n"
    unlabelled = HTTP_DV.replace("  labels:\n    app: vm\n", "")
    assert cdi("apply", "-f", write_file("dv3.yaml", unlabelled)).out.endswith("configured\n")
    assert cdi("get", "dv", "-l", "app", "-o", "name").out == ""


def test_spec_of_a_datavolume_is_immutable(cdi: Run, write_file: WriteFile) -> None:
    cdi("apply", "-f", write_file("dv.yaml", HTTP_DV))
    changed = HTTP_DV.replace("fedora.qcow2", "centos.qcow2")
    result = cdi("apply", "-f", write_file("dv2.yaml", changed))
    assert result.code == 1
    assert result.err == "error: datavolume.cdi.kubevirt.io/fedora: spec: Cannot update DataVolume Spec\n"
    assert "fedora.qcow2" in cdi("get", "dv", "fedora", "-o", "json").out


def test_invalid_manifest_lists_every_problem_and_writes_nothing(cdi: Run, write_file: WriteFile) -> None:
    result = cdi("apply", "-f", write_file("bad.yaml", INVALID_DV + "---\n" + BLANK_DV))
    assert result.code == 1
    assert result.error_lines == [
        "error: datavolume.cdi.kubevirt.io/broken: spec: Duplicate storage definition, both target storage and "
        "target pvc defined",
        "error: datavolume.cdi.kubevirt.io/broken: spec.source.http.url: Invalid source URL scheme: "
        "ftp://example.com/disk.img (use one of http, https, gs)",
    ]
    assert result.out == "datavolume.cdi.kubevirt.io/blank-dv created\n"  # the valid one still goes in
    assert cdi("get", "dv", "broken").err == 'error: datavolumes.cdi.kubevirt.io "broken" not found\n'


def test_schema_errors_are_listed_too(cdi: Run, write_file: WriteFile) -> None:
    broken = BLANK_DV.replace("storage: 500Mi", "storage: lots").replace("blank: {}", "blank: {}\n    http: {}")
    result = cdi("apply", "-f", write_file("bad.yaml", broken))
    assert result.code == 1
    assert len(result.error_lines) == 2
    assert all(line.startswith("error: datavolume.cdi.kubevirt.io/blank-dv: spec.") for line in result.error_lines)


def test_yaml_syntax_error_names_the_line_and_applies_nothing(cdi: Run, write_file: WriteFile) -> None:
    path = write_file("bad.yaml", BLANK_DV + "---\nkind: [\n")
    result = cdi("apply", "-f", path)
    assert (result.code, result.out) == (1, "")
    assert result.err == f"error: error parsing {path}: line 14, column 1: expected the node content, but found " \
                         "'<stream end>'\n"
    assert cdi("get", "dv").err == "No resources found in default namespace.\n"


def test_stdin_several_files_and_namespaces(cdi: Run, write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(BLANK_DV))
    result = cdi("apply", "-f", "-", "-f", write_file("dv.yaml", HTTP_DV), "-n", "vms")
    assert result.out == "datavolume.cdi.kubevirt.io/blank-dv created\ndatavolume.cdi.kubevirt.io/fedora created\n"
    assert cdi("get", "dv", "-n", "vms", "-o", "name").out.count("\n") == 2
    pinned = HTTP_DV.replace("  name: fedora\n", "  name: fedora\n  namespace: prod\n")
    clash = cdi("apply", "-f", write_file("pinned.yaml", pinned), "-n", "vms")
    assert clash.code == 1
    assert clash.err.startswith('error: the namespace from the provided object "prod" does not match the namespace '
                                '"vms".')


def test_unknown_kind_and_missing_file(cdi: Run, write_file: WriteFile) -> None:
    path = write_file("odd.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    result = cdi("apply", "-f", path)
    assert result.code == 1
    assert result.err == (f'error: resource mapping not found for name: "w" from "{path}": no matches for kind '
                          '"Widget" in version "example.com/v1"\n')
    missing = cdi("apply", "-f", "/nonexistent/dv.yaml")
    assert (missing.code, missing.err) == (1, 'error: the path "/nonexistent/dv.yaml" does not exist\n')
    empty = cdi("apply", "-f", write_file("empty.yaml", "---\n"))
    assert (empty.code, empty.err) == (1, "error: no objects passed to apply\n")


def test_create_refuses_existing_objects(cdi: Run, write_file: WriteFile) -> None:
    path = write_file("dv.yaml", BLANK_DV)
    assert cdi("create", "-f", path).out == "datavolume.cdi.kubevirt.io/blank-dv created\n"
    again = cdi("create", "-f", path)
    assert (again.code, again.err) == (1, 'error: datavolumes.cdi.kubevirt.io "blank-dv" already exists\n')
    # apply takes over an object `create` made, recording its manifest.
    assert cdi("apply", "-f", path).out == "datavolume.cdi.kubevirt.io/blank-dv configured\n"
    assert cdi("apply", "-f", path).out == "datavolume.cdi.kubevirt.io/blank-dv unchanged\n"


def test_every_seed_example_applies_and_reapplies_unchanged(cdi: Run, tmp_path: Path) -> None:
    directory = tmp_path / "seed"
    directory.mkdir()
    examples = {**FROM_SEED_YAML, **HAND_WRITTEN_YAML}
    # An UploadTokenRequest is answered, never stored: like kubectl, apply (which reads first) cannot use it.
    (tmp_path / "token.yaml").write_text(examples.pop("upload-token-request"))
    refused = cdi("apply", "-f", str(tmp_path / "token.yaml"))
    assert (refused.code, refused.error_lines[-1]) == (1, "error: the server does not allow this method on the "
                                                          "requested resource")
    for name, text in examples.items():
        (directory / f"{name}.yaml").write_text(text)
    first = cdi("apply", "-f", str(directory))
    assert (first.code, first.err) == (0, "")
    assert first.out.count(" created\n") == len(examples)
    second = cdi("apply", "-f", str(directory))
    assert second.out.count(" unchanged\n") == len(examples)


class RacingCluster:
    """The real store, but another writer changes the object just before our first update lands."""

    def __init__(self, inner: EmbeddedCluster) -> None:
        self.inner, self.raced = inner, False

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Object:
        return await self.inner.get(api_version, kind, name, namespace)

    async def create(self, obj: Object) -> Object:
        return await self.inner.create(obj)

    async def update(self, obj: Object) -> Object:
        if not self.raced:
            self.raced = True
            meta = obj["metadata"]
            await self.inner.patch(obj["apiVersion"], obj["kind"], meta["name"],
                                   {"metadata": {"labels": {"controller": "was-here"}}}, meta["namespace"])
        return await self.inner.update(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_apply_retries_when_another_writer_wins(cluster: EmbeddedCluster) -> None:
    [manifest] = parse_manifests(HTTP_DV, "dv.yaml")
    target = resolve_target(manifest, None)
    racing: Any = RacingCluster(cluster)
    assert (await apply_object(racing, target))[0] == "created"
    relabelled = parse_manifests(HTTP_DV.replace("app: vm", "app: web"), "dv.yaml")[0]
    outcome, written = await apply_object(racing, resolve_target(relabelled, None))
    assert racing.raced and outcome == "configured"
    labels: Mapping[str, str] = written["metadata"]["labels"]
    assert labels == {"app": "web", "controller": "was-here"}
