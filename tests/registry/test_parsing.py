"""Pure parsers of the registry source: references, auth challenges, manifests, platform choice, the
image config checks and upstream's env-to-labels rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.errors import ConfigurationError, InvalidImage
from importer.sources.registry.auth import Challenge, parse_challenges
from importer.sources.registry.manifest import (
    BOOTC_REFUSED,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    Platform,
    check_config,
    env_labels,
    parse_manifest,
    select_platform,
)
from importer.sources.registry.reference import ArchiveReference, DockerReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("docker://127.0.0.1:5000/disks/fedora:latest", DockerReference("127.0.0.1:5000", "disks/fedora", "latest", None)),
    ("docker://kubevirt/fedora-cloud-container-disk-demo:latest",
     DockerReference("docker.io", "kubevirt/fedora-cloud-container-disk-demo", "latest", None)),
    ("docker://fedora", DockerReference("docker.io", "library/fedora", "latest", None)),
    ("docker://quay.io/containerdisks/centos:7-2009", DockerReference("quay.io", "containerdisks/centos", "7-2009", None)),
    (f"docker://localhost/disk@{DIGEST}", DockerReference("localhost", "disk", None, DIGEST)),
    (f"docker://registry:5000/a/b:v1@{DIGEST}", DockerReference("registry:5000", "a/b", "v1", DIGEST)),
    ("oci-archive:/tmp/image.tar", ArchiveReference(Path("/tmp/image.tar"), None)),
    ("oci-archive:///tmp/image.tar:fedora", ArchiveReference(Path("/tmp/image.tar"), "fedora")),
    ("oci-archive://tmp/image.tar", ArchiveReference(Path("/tmp/image.tar"), None)),
])
def test_references(endpoint: str, expected: object) -> None:
    assert parse_reference(endpoint) == expected


def test_docker_hub_api_host_and_manifest_reference() -> None:
    ref = parse_reference("docker://kubevirt/fedora")
    assert isinstance(ref, DockerReference)
    assert (ref.api_host, ref.manifest_reference, str(ref)) == (
        "registry-1.docker.io", "latest", "docker://docker.io/kubevirt/fedora:latest")


@pytest.mark.parametrize(("endpoint", "message"), [
    ("quay.io/fedora", 'Invalid image name "quay.io/fedora", expected colon-separated transport:reference'),
    ("http://host/disk", 'Invalid image name "http://host/disk", unknown transport'),
    ("docker://Host.io/UPPER:tag", "must be lower-case components"),
    ("docker://host.io/disk@sha256:short", "is not of the form sha256"),
    ("docker://host.io/disk:bad tag", "is not a valid tag"),
    ("oci-archive:", "needs a path"),
])
def test_invalid_references(endpoint: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="Invalid image name") as caught:
        parse_reference(endpoint)
    assert message in caught.value.message


def test_challenges() -> None:
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:disks/fedora:pull", Basic realm="x \\"quoted\\""')
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                             "scope": "repository:disks/fedora:pull"}),
        Challenge("basic", {"realm": 'x "quoted"'}),
    ]
    assert parse_challenges('Basic realm=cdi-test') == [Challenge("basic", {"realm": "cdi-test"})]
    assert parse_challenges("") == []


def _descriptor(arch: str | None = None, digest: str = DIGEST, size: object = 10) -> dict[str, object]:
    doc: dict[str, object] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                              "size": size}
    if arch:
        doc["platform"] = {"architecture": arch, "os": "linux"}
    return doc


def test_manifest_and_index_by_media_type_or_shape() -> None:
    manifest = {"schemaVersion": 2, "config": _descriptor(), "layers": [_descriptor(), _descriptor()]}
    parsed = parse_manifest(json.dumps(manifest).encode(), "application/vnd.docker.distribution.manifest.v2+json", "m")
    assert isinstance(parsed, ImageManifest) and len(parsed.layers) == 2
    index = {"schemaVersion": 2, "manifests": [_descriptor("amd64"), _descriptor("arm64")]}
    parsed_index = parse_manifest(json.dumps(index).encode(), "", "i")
    assert isinstance(parsed_index, ImageIndex)
    assert select_platform(parsed_index, Platform("arm64")).platform == Platform("arm64", "linux")


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "is malformed: not valid JSON"),
    (b"[]", "expected a JSON object"),
    (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "Docker schema 1 manifest, which is not supported"),
    (json.dumps({"schemaVersion": 2, "layers": "x", "config": _descriptor()}).encode(), "'layers' is not a list"),
    (json.dumps({"schemaVersion": 2, "layers": []}).encode(), "no 'config' descriptor"),
    (json.dumps({"schemaVersion": 2, "layers": [_descriptor(digest="md5:00")], "config": _descriptor()}).encode(),
     "descriptor digest 'md5:00'"),
    (json.dumps({"schemaVersion": 2, "layers": [_descriptor(size=True)], "config": _descriptor()}).encode(),
     "invalid size True"),
])
def test_malformed_manifests(body: bytes, message: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        parse_manifest(body, "", "the manifest of x")
    assert message in caught.value.message


def test_no_platform_match_uses_upstreams_words() -> None:
    index = ImageIndex(())
    with pytest.raises(InvalidImage, match='no image found in image index for architecture "absent", variant "", '
                                           'OS "linux"'):
        select_platform(index, Platform("absent"))


def test_config_checks() -> None:
    config = ImageConfig("amd64", "linux", (), {})
    check_config(config, "")
    check_config(config, "amd64")
    with pytest.raises(InvalidImage, match='"amd64" doesn\'t match requested architecture: "arm64"'):
        check_config(config, "arm64")
    with pytest.raises(InvalidImage) as caught:
        check_config(ImageConfig("amd64", "linux", (), {"containers.bootc": "1"}), "")
    assert caught.value.message == BOOTC_REFUSED


def test_env_labels_as_upstream() -> None:
    assert env_labels(("INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora",
                       "INSTANCETYPE_KUBEVIRT_IO_DEFAULT_INSTANCETYPE=u1.medium", "KUBEVIRT_IO_OS=linux",
                       "PATH=/bin", "NOVALUE_KUBEVIRT_IO_X")) == {
        "instancetype.kubevirt.io/default-preference": "fedora",
        "instancetype.kubevirt.io/default-instancetype": "u1.medium",
        "kubevirt.io/os": "linux",
    }
