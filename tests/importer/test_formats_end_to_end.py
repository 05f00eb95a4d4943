"""Every format x compression imported over HTTP from nginx is byte-identical to `qemu-img convert`."""

from __future__ import annotations

import pytest

from tests.importer.conftest import Runner
from tests.support.catalog import Group, Image, ImageSet
from tests.support.nginx import NginxServer

# The catalogue is built by a session fixture, so parameters are the generator's file names; the last test
# checks they all exist.
DISK_NAMES = ["disk.raw", "disk.qcow2", "disk-compressed.qcow2", "disk.vmdk", "disk-stream.vmdk", "disk.vdi",
              "disk.vhd", "disk.vhdx", "cdrom.iso"]
COMPRESSED_NAMES = [f"{stem}.{ext}" for stem in ("disk.raw", "disk-multi.raw", "disk.qcow2", "disk-multi.qcow2",
                                                  "cdrom.iso", "cdrom-multi.iso") for ext in ("gz", "xz", "zst")]


def _expected(images: ImageSet, name: str) -> Image:
    image = images[name]
    assert image.content_sha256 and image.virtual_size, f"{name} has no expected content"
    return image


@pytest.mark.parametrize("name", DISK_NAMES + COMPRESSED_NAMES)
def test_import_is_byte_identical(name: str, images: ImageSet, nginx: NginxServer, run_importer: Runner) -> None:
    image = _expected(images, name)
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url(name)})
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete"
    assert run.message.scratch_space_required is False
    assert run.disk.stat().st_size == image.virtual_size
    assert run.disk_sha256() == image.content_sha256
    assert oct(run.disk.stat().st_mode & 0o777) == "0o660"
    assert list(run.scratch.iterdir()) == []


def test_catalogue_covers_every_name(images: ImageSet) -> None:
    names = {i.name for i in images.group(Group.DISK)} | {i.name for i in images.group(Group.COMPRESSED)}
    assert set(DISK_NAMES + COMPRESSED_NAMES) <= names
