"""Reaching a registry and trusting what it sends: TLS with a CA directory or skip-verify, anonymous,
basic and bearer-token auth, unknown tags, tampered blobs, images without a disk or with two, malformed
manifests, and the refused `pullMethod: node`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.importer.conftest import ImportRun, Runner
from tests.registry.conftest import PASSWORD, USER, Catalog
from tests.registry.test_registry_import import assert_reference_disk, plain, registry_env
from tests.support.catalog import ImageSet
from tests.support.registry import RegistryServer, StubRegistry, TokenServer
from tests.support.tls import TestPKI

CREDENTIALS = {"IMPORTER_ACCESS_KEY_ID": USER, "IMPORTER_SECRET_KEY": PASSWORD}


def failed(run: ImportRun, reason: str, *, retryable: bool, exit_code: int = 1) -> str:
    assert run.returncode == exit_code, run.log
    assert run.message is not None
    assert (run.message.reason, run.message.retryable) == (reason, retryable), run.message
    assert not run.disk.exists(), "a failed import must not leave a disk that looks imported"
    return run.message.message


@pytest.fixture
def ca_dir(tmp_path: Path, pki: TestPKI) -> Path:
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(pki.ca_cert, directory / "ca.pem")  # the seeds: oc create configmap tls-certs --from-file=ca.pem
    return directory


def test_tls_with_the_ca_directory(tls_registry: RegistryServer, ca_dir: Path, images: ImageSet,
                                   run_importer: Runner) -> None:
    run = run_importer(registry_env(tls_registry.reference("disks/fedora"), IMPORTER_CERT_DIR=str(ca_dir)))
    assert_reference_disk(run, images)


def test_tls_without_the_ca_is_refused(tls_registry: RegistryServer, run_importer: Runner) -> None:
    message = failed(run_importer(registry_env(tls_registry.reference("disks/fedora"))), "ImagePullFailed",
                     retryable=True)
    assert "failed to pull image" in message and "CERTIFICATE_VERIFY_FAILED" in message


def test_tls_insecure_skip_verify(tls_registry: RegistryServer, images: ImageSet, run_importer: Runner) -> None:
    run = run_importer(registry_env(tls_registry.reference("disks/fedora"), INSECURE_TLS="true"))
    assert_reference_disk(run, images)


def test_plain_http_needs_an_insecure_registry(registry: RegistryServer, catalog: Catalog,
                                               run_importer: Runner) -> None:
    message = failed(run_importer(registry_env(registry.reference("disks/fedora"))), "ImagePullFailed",
                     retryable=True)
    assert f"pinging container registry {registry.host}" in message


def test_basic_auth(basic_registry: RegistryServer, images: ImageSet, run_importer: Runner) -> None:
    assert_reference_disk(run_importer(plain(basic_registry, "disks/fedora", **CREDENTIALS)), images)


def test_basic_auth_without_or_with_wrong_credentials(basic_registry: RegistryServer, run_importer: Runner) -> None:
    anonymous = failed(run_importer(plain(basic_registry, "disks/fedora")), "ImagePullFailed", retryable=True)
    assert "requires authentication" in anonymous and "accessKeyId" in anonymous
    wrong = failed(run_importer(plain(basic_registry, "disks/fedora", IMPORTER_ACCESS_KEY_ID=USER,
                                      IMPORTER_SECRET_KEY="wrong")), "ImagePullFailed", retryable=True)
    assert "access denied: HTTP 401" in wrong and "UNAUTHORIZED" in wrong


def test_bearer_token_auth(token_registry: RegistryServer, token_server: TokenServer, images: ImageSet,
                           run_importer: Runner) -> None:
    assert_reference_disk(run_importer(plain(token_registry, "disks/fedora", **CREDENTIALS)), images)
    assert {"user": USER, "scope": "repository:disks/fedora:pull", "service": token_server.service} \
        in token_server.requests


def test_bearer_token_with_wrong_credentials(token_registry: RegistryServer, run_importer: Runner) -> None:
    message = failed(run_importer(plain(token_registry, "disks/fedora", IMPORTER_ACCESS_KEY_ID=USER,
                                        IMPORTER_SECRET_KEY="wrong")), "ImagePullFailed", retryable=True)
    assert "answered HTTP 401 (wrong accessKeyId/secretKey?)" in message


def test_unknown_tag(registry: RegistryServer, catalog: Catalog, run_importer: Runner) -> None:
    message = failed(run_importer(plain(registry, "disks/fedora", "no-such-tag")), "ImagePullFailed",
                     retryable=True)
    assert "failed to pull image" in message and "MANIFEST_UNKNOWN" in message


@pytest.mark.parametrize("tag", ["tar", "gzip"])
def test_tampered_blob_is_a_checksum_error(registry: RegistryServer, catalog: Catalog, run_importer: Runner,
                                           tag: str) -> None:
    """A blob whose bytes do not match its digest: fatal, not retried, names both digests, no disk.
    (Damaged gzip breaks decompression first; the digest check still names the cause.)"""
    message = failed(run_importer(plain(registry, "bad/tampered", tag)), "ChecksumError", retryable=False,
                     exit_code=0)  # upstream's exit code for a checksum mismatch
    assert "checksum mismatch for layer 1/1 of docker://" in message
    expected, calculated = message.split("expected ")[1].split(", calculated ")
    assert expected.startswith("sha256:") and calculated.startswith("sha256:") and expected != calculated


def test_image_without_a_disk(registry: RegistryServer, catalog: Catalog, run_importer: Runner) -> None:
    message = failed(run_importer(plain(registry, "bad/nodisk")), "InvalidImage", retryable=False)
    assert "Failed to find VM disk image file in the container image" in message


def test_image_with_two_disks(registry: RegistryServer, catalog: Catalog, run_importer: Runner) -> None:
    message = failed(run_importer(plain(registry, "bad/twodisks")), "InvalidImage", retryable=False)
    assert "image directory contains more than one file: /disk/a.img and /disk/b.img in layer 1/1" in message


def test_malformed_manifest(registry: RegistryServer, catalog: Catalog, run_importer: Runner) -> None:
    """The registry stores a config descriptor with a negative size; we refuse to use it."""
    message = failed(run_importer(plain(registry, "bad/malformed")), "InvalidImage", retryable=False)
    assert "the manifest of" in message and "is malformed: descriptor" in message and "invalid size -5" in message


@pytest.fixture
def garbage_registry() -> Iterator[StubRegistry]:
    """Malformed JSON, which docker-registry refuses on push, so a stub serves it."""
    stub = StubRegistry(b'{"schemaVersion": 2, "layers": [', "application/vnd.oci.image.manifest.v1+json")
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


def test_manifest_that_is_not_json(garbage_registry: StubRegistry, run_importer: Runner) -> None:
    run = run_importer(registry_env(f"docker://127.0.0.1:{garbage_registry.port}/disks/x:1", INSECURE_TLS="true"))
    message = failed(run, "InvalidImage", retryable=False)
    assert "the manifest of docker://" in message and "is malformed: not valid JSON" in message


def test_pull_method_node_is_refused(registry: RegistryServer, catalog: Catalog, run_importer: Runner) -> None:
    message = failed(run_importer(plain(registry, "disks/fedora", IMPORTER_PULL_METHOD="node")),
                     "InvalidConfiguration", retryable=False)
    assert message.startswith("pullMethod: node needs a container runtime on the node")
    assert "Use pullMethod: pod" in message
