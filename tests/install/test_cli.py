"""`cdi manifests` end to end in-process: YAML on stdout, certificates kept in --ca-dir, errors on one line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from cdi.cli.main import main
from cdi.contracts import deployment as dep


def cdi(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_prints_every_document_as_plain_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cdi(capsys, "manifests")
    assert (code, err) == (0, "")
    documents = list(yaml.safe_load_all(out))
    assert documents[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": documents[0]["metadata"]}
    assert documents[0]["metadata"]["name"] == dep.NAMESPACE
    assert "&id" not in out and "*id" not in out  # no YAML aliases: every tool reads it
    images = {c["image"] for d in documents if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"pycdi/pycdi:latest"}


def test_namespace_and_image_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cdi(capsys, "manifests", "--namespace", "storage", "--image", "example.org/cdi:v2")
    assert code == 0
    documents = list(yaml.safe_load_all(out))
    assert {d["metadata"].get("namespace") for d in documents} == {None, "storage", "kube-system"}
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/cdi:v2"


def test_without_a_ca_dir_every_run_issues_new_certificates(capsys: pytest.CaptureFixture[str]) -> None:
    assert cdi(capsys, "manifests")[1] != cdi(capsys, "manifests")[1]


def test_a_ca_dir_makes_runs_identical(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = cdi(capsys, "manifests", "--ca-dir", str(directory))
    second = cdi(capsys, "manifests", "--ca-dir", str(directory))
    assert first[0] == second[0] == 0 and first[1] == second[1]
    keys = sorted(p.name for p in directory.glob("*.key"))
    assert keys == ["apiserver.key", "ca.key", "uploadproxy.key", "uploadserver-ca.key", "uploadserver-client.key"]
    for key in directory.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_broken_file_in_the_ca_dir_is_one_error_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cdi(capsys, "manifests", "--ca-dir", str(tmp_path))
    (tmp_path / "ca.crt").write_text("garbage\n")
    code, out, err = cdi(capsys, "manifests", "--ca-dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {tmp_path / 'ca.crt'} is not a PEM certificate") and err.count("\n") == 1
    (tmp_path / "ca.crt").unlink()
    (tmp_path / "apiserver.key").write_text("garbage\n")
    code, out, err = cdi(capsys, "manifests", "--ca-dir", str(tmp_path))
    assert (code, out) == (1, "") and err.startswith("error: cannot use the certificates in") and err.count("\n") == 1


def test_a_namespace_that_is_not_a_dns_label_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cdi(capsys, "manifests", "--namespace", "Not_Valid")
    assert (code, out) == (2, "")
    assert "invalid namespace 'Not_Valid'" in err and err.count("\n") == 1
