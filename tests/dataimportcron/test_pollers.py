"""The pollers against real servers on loopback: a digest pushed to docker-registry (plain, and TLS
with basic auth and a CA), a file changed behind nginx, an object overwritten in S3 (moto)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi.controllers.dataimportcron.pollers import (
    HttpPoller,
    ImagePullFailed,
    NoChangeValidator,
    PollTarget,
    S3Poller,
    SourceUnreachable,
)
from cdi.controllers.dataimportcron.registry import RegistryPoller
from tests.registry import images as oci
from tests.support.nginx import NginxServer
from tests.support.registry import RegistryServer, htpasswd_line
from tests.support.s3 import MotoS3
from tests.support.tls import TestPKI

USER, PASSWORD = "cron-user", "cron-pass"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[tuple[RegistryServer, RegistryServer]]:
    storage, work = tmp_path_factory.mktemp("cron-registry"), tmp_path_factory.mktemp("cron-registry-work")
    (work / "htpasswd").write_text(htpasswd_line(USER, PASSWORD))
    with RegistryServer(storage, work / "plain") as plain, \
            RegistryServer(storage, work / "secure", tls=pki, htpasswd=work / "htpasswd") as secure:
        yield plain, secure


def push(registry: RegistryServer, content: bytes) -> str:
    disk = oci.layer({"disk/disk.img": content})
    return oci.Pusher(registry.base_url).image("disks/fedora", "latest", oci.image([disk]))


# The importer's registry client encodes basic credentials with aiohttp.BasicAuth, which this aiohttp deprecates.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_registry_digest_follows_the_tag(registries: tuple[RegistryServer, RegistryServer], pki: TestPKI) -> None:
    plain, secure = registries
    first = push(plain, b"one" * 1000)
    target = PollTarget("registry", plain.reference("disks/fedora"), insecure=True)
    assert await RegistryPoller().poll(target) == first
    second = push(plain, b"two" * 1000)
    assert second != first and await RegistryPoller().poll(target) == second
    secured = PollTarget("registry", secure.reference("disks/fedora"), USER, PASSWORD,
                         ca_certificates=(pki.ca_cert.read_text(),))
    assert await RegistryPoller().poll(secured) == second
    with pytest.raises(ImagePullFailed):
        await RegistryPoller().poll(PollTarget("registry", secure.reference("disks/fedora"),
                                               ca_certificates=(pki.ca_cert.read_text(),)))
    with pytest.raises(ImagePullFailed):
        await RegistryPoller().poll(PollTarget("registry", plain.reference("disks/nothing"), insecure=True))


async def test_http_digest_changes_with_the_file(tmp_path: Path, pki: TestPKI) -> None:
    docroot = tmp_path / "www"
    docroot.mkdir()
    disk = docroot / "disk.img"
    disk.write_bytes(b"one" * 1000)
    with NginxServer(docroot, tmp_path / "nginx", pki) as nginx:
        target = PollTarget("http", nginx.url("disk.img"))
        first = await HttpPoller().poll(target)
        assert await HttpPoller().poll(target) == first  # nothing changed: same digest, nothing downloaded
        disk.write_bytes(b"two" * 2000)
        os.utime(disk, (disk.stat().st_atime, disk.stat().st_mtime + 10))
        assert await HttpPoller().poll(target) != first
        secured = PollTarget("http", nginx.url("disk.img", tls=True), ca_certificates=(pki.ca_cert.read_text(),))
        assert (await HttpPoller().poll(secured)).startswith("sha256:")
        with pytest.raises(SourceUnreachable):
            await HttpPoller().poll(PollTarget("http", nginx.url("missing.img")))
        guarded = nginx.url("disk.img", auth=True)
        with pytest.raises(SourceUnreachable, match="401"):
            await HttpPoller().poll(PollTarget("http", guarded))
        user = nginx.credentials
        assert await HttpPoller().poll(PollTarget("http", guarded, user.username, user.password)) == \
            await HttpPoller().poll(PollTarget("http", guarded, user.username, user.password))


async def test_s3_digest_changes_with_the_object(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"one" * 1000)
    with MotoS3() as s3:
        s3.upload("images", "disk.img", disk)
        target = PollTarget("s3", s3.url("images", "disk.img"), "test-access", "test-secret")
        first = await S3Poller().poll(target)
        assert await S3Poller().poll(target) == first
        disk.write_bytes(b"two" * 1000)
        s3.upload("images", "disk.img", disk)
        assert await S3Poller().poll(target) != first
        with pytest.raises(SourceUnreachable):
            await S3Poller().poll(PollTarget("s3", s3.url("images", "missing.img"), "test-access", "test-secret"))


def test_no_validator_is_not_retryable() -> None:
    assert not NoChangeValidator("x").retryable
