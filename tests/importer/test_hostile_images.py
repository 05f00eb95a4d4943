"""Dangerous input is refused with a reason a user can act on, and never leaves a disk that looks done."""

from __future__ import annotations

import pytest

from tests.importer.conftest import ImportRun, Runner
from tests.support.archives import ESCAPED_NAME
from tests.support.catalog import ImageSet
from tests.support.nginx import NginxServer


def http(url: str, **extra: str) -> dict[str, str]:
    return {"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, **extra}


def assert_refused(run: ImportRun, reason: str, text: str) -> None:
    assert run.returncode == 1, run.log
    assert run.message is not None
    assert run.message.reason == reason, run.message
    assert text in run.message.message
    assert run.message.retryable is False
    assert not run.disk.exists()
    assert [p.name for p in run.data.iterdir()] == []
    assert list(run.scratch.iterdir()) == []


@pytest.mark.parametrize(("name", "reason", "text"), [
    ("backing.qcow2", "UnsafeImage", "has a backing file base.raw"),
    ("datafile.qcow2", "UnsafeImage", "external data file"),
    ("luks.qcow2", "UnsafeImage", "encrypted"),
    ("disk.luks", "UnsafeImage", "LUKS-encrypted"),
    ("v1.qcow", "InvalidImage", "Invalid format qcow"),
    ("truncated.qcow2", "InvalidImage", "corrupt or truncated"),
    ("corrupt-header.qcow2", "InvalidImage", "qemu-img execution failed"),
    ("short.bin", "InvalidImage", "could not process image header: unexpected EOF"),
    ("empty.bin", "InvalidImage", "could not process image header: EOF"),
])
def test_unsafe_or_broken_images_are_refused(name: str, reason: str, text: str, nginx: NginxServer,
                                             run_importer: Runner) -> None:
    assert_refused(run_importer(http(nginx.url(name))), reason, text)


def test_backing_file_refusal_names_the_file_and_says_what_to_do(nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("backing.qcow2")))
    assert run.message is not None
    assert run.message.message == (
        "Unable to process data: Image is invalid because it has a backing file base.raw: "
        "images with backing files are refused; flatten it first (qemu-img convert -O qcow2)")


def test_huge_virtual_size_is_refused_before_download(nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("huge.qcow2"), IMPORTER_IMAGE_SIZE="1Gi"))
    assert_refused(run, "ImageTooLarge",
                   f"virtual image size {100 << 30} is larger than the reported available storage {1 << 30}")


def test_image_larger_than_the_volume(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("disk.raw.gz"), IMPORTER_IMAGE_SIZE="32Mi"))
    assert_refused(run, "ImageTooLarge", "is larger than the reported available storage 33554432")


def test_decompression_bomb_stops_at_the_volume_size(nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url("bomb.raw.xz"), IMPORTER_IMAGE_SIZE="64Mi"))
    assert_refused(run, "ImageTooLarge", "is larger than the reported available storage 67108864")


@pytest.mark.parametrize(("name", "text"), [
    ("evil-dotdot.tar", "escapes the target directory"),
    ("evil-absolute.tar", "absolute path"),
    ("evil-symlink.tar", "links to an absolute path"),
    ("evil-symlink-write.tar", "links outside the target directory"),
    ("evil-hardlink.tar", "links"),
    ("evil-device.tar", "device or FIFO"),
])
def test_evil_archives_are_refused(name: str, text: str, nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer(http(nginx.url(name), IMPORTER_CONTENTTYPE="archive"))
    assert_refused(run, "UnsafeArchive", text)
    assert not (run.data.parent / ESCAPED_NAME).exists()
