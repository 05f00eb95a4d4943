"""Registry fixtures: one storage directory, pushed once through a plain registry, then read through
variants (TLS, htpasswd basic auth, bearer tokens) that share it. `catalog` names every pushed image and
what it should import to; the tampered images' blobs are damaged in storage right after the push."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.importer.conftest import run_importer
from tests.registry import images as oci
from tests.support.catalog import ImageSet
from tests.support.registry import RegistryServer, TokenServer, htpasswd_line
from tests.support.tls import TestPKI

__all__ = ["run_importer"]  # the importer runner fixture, reused as is

USER, PASSWORD = "cdi", "s3cret-pass"
ARM_DISK = "cdrom.iso"


@dataclass(frozen=True)
class Catalog:
    storage: Path
    multiarch_digest: str
    fedora_digest: str
    layout_archive: Path
    env: tuple[str, ...]


def _blob_file(storage: Path, digest: str) -> Path:
    hexdigest = digest.split(":")[1]
    return storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


def _tamper(storage: Path, blob: oci.Blob) -> None:
    """Flip one byte in the middle of a stored blob (same size, so only the digest can tell)."""
    path = _blob_file(storage, blob.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _push_all(pusher: oci.Pusher, images: ImageSet, storage: Path, workdir: Path) -> Catalog:
    env = ("INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora", "PATH=/usr/bin")
    qcow2 = oci.layer({"disk/disk.qcow2": images.path("disk.qcow2")})
    fedora = oci.image([qcow2], env=env)
    fedora_digest = pusher.image("disks/fedora", "latest", fedora)
    pusher.image("disks/fedora", "docker", oci.image([oci.layer({"disk/disk.qcow2": images.path("disk.qcow2")},
                                                                flavour="docker")], flavour="docker"))
    pusher.image("disks/raw", "zstd", oci.image([oci.layer({"disk/disk.img": images.path("disk.raw")},
                                                           compression="zstd")]))
    unrelated = oci.layer({"etc/os-release": b"ID=test\n", "usr/bin/tool": b"#!/bin/sh\n"},
                          directories=("etc/", "usr/", "usr/bin/"))
    plain = oci.layer({"disk/disk.qcow2": images.path("disk.qcow2")}, compression=None)
    top = oci.layer({"etc/motd": b"hello\n"}, compression=None, directories=("etc/",))
    pusher.image("disks/layers", "latest", oci.image([unrelated, plain, top]))
    pusher.image("disks/xz-inside", "latest", oci.image([oci.layer({"disk/disk.raw.xz": images.path("disk.raw.xz")})]))
    stale = oci.layer({"disk/old.img": b"\xaa" * (1 << 20)})
    replacement = oci.layer({"disk/.wh.old.img": b"", "disk/disk.qcow2": images.path("disk.qcow2")})
    pusher.image("disks/replaced", "latest", oci.image([stale, replacement]))
    arm = oci.image([oci.layer({"disk/disk.iso": images.path(ARM_DISK)})], architecture="arm64")
    for img in (fedora, arm):
        pusher.image("disks/multiarch", img.manifest.digest, img)
    multiarch = oci.index({"amd64": fedora, "arm64": arm})
    multiarch_digest = pusher.manifest("disks/multiarch", "latest", multiarch)

    pusher.image("bad/nodisk", "latest", oci.image([oci.layer({"etc/hostname": b"box\n"}, directories=("etc/",))]))
    pusher.image("bad/twodisks", "latest", oci.image([oci.layer({"disk/a.img": b"\x01" * 4096,
                                                                 "disk/b.img": b"\x02" * 4096})]))
    plain_config = oci.image([qcow2]).config  # the registry accepts a negative size; we must not
    malformed = oci.image([qcow2], config_override={"config": {**plain_config.descriptor(), "size": -5}})
    pusher.image("bad/malformed", "latest", malformed)
    for tag, compression in (("tar", None), ("gzip", "gzip")):
        unique = os.urandom(1 << 20)  # blobs are shared by digest: damage only a blob no other image uses
        tampered = oci.layer({"disk/disk.img": unique}, compression=compression)
        pusher.image("bad/tampered", tag, oci.image([tampered]))
        _tamper(storage, tampered)
    archive = oci.write_oci_archive(workdir / "layout.tar", {"fedora": fedora, "arm": arm})
    return Catalog(storage, multiarch_digest, fedora_digest, archive, env)


@pytest.fixture(scope="session")
def registry_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-storage")


@pytest.fixture(scope="session")
def registry(registry_storage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP, no auth: the one the tests push through."""
    with RegistryServer(registry_storage, tmp_path_factory.mktemp("registry-plain")) as server:
        yield server


@pytest.fixture(scope="session")
def catalog(registry: RegistryServer, images: ImageSet, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return _push_all(oci.Pusher(registry.base_url), images, registry.storage, tmp_path_factory.mktemp("oci"))


@pytest.fixture(scope="session")
def tls_registry(catalog: Catalog, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RegistryServer]:
    with RegistryServer(catalog.storage, tmp_path_factory.mktemp("registry-tls"), tls=pki) as server:
        yield server


@pytest.fixture(scope="session")
def basic_registry(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    workdir = tmp_path_factory.mktemp("registry-basic")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_line(USER, PASSWORD))
    with RegistryServer(catalog.storage, workdir, htpasswd=htpasswd) as server:
        yield server


@pytest.fixture(scope="session")
def token_server(pki: TestPKI) -> Iterator[TokenServer]:
    server = TokenServer(pki, USER, PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(catalog: Catalog, token_server: TokenServer, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[RegistryServer]:
    workdir = tmp_path_factory.mktemp("registry-token")
    with RegistryServer(catalog.storage, workdir, token=token_server.auth) as server:
        yield server
