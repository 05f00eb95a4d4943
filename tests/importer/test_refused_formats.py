"""Only the formats we accept are imported: images qemu-img recognises as qed, parallels, qcow v1, bochs,
cloop (and a VMDK 3 header) are refused with `Invalid format <name>`, through the real `cdi-importer`
over a real nginx and through the upload server, never written to the volume as raw. Data that starts
with no known magic, even one byte away from one, still imports as raw.

qemu-img creates the qed, parallels and qcow images; it cannot create bochs or cloop, so those headers
are written by hand, and qemu-img's own probe confirms it reads each file as that format."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from importer.uploadserver.config import load_config
from importer.uploadserver.main import UploadServer
from tests.importer.conftest import ImportRun, Runner
from tests.support.nginx import NginxServer
from tests.support.tls import TestPKI

MiB = 1 << 20
CLOOP_MAGIC = b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"
# file name → (qemu-img's probed format, the name our refusal gives)
REFUSED = {
    "disk.qed": ("qed", "qed"),
    "disk.hdd": ("parallels", "parallels"),
    "disk.qcow": ("qcow", "qcow (version 1)"),
    "disk.bochs": ("bochs", "bochs"),
    "disk.cloop": ("cloop", "cloop"),
    "disk.qed.gz": ("raw", "qed"),  # compressed: refused beneath the compression
}


def _qemu_create(path: Path, fmt: str) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "64M"], check=True)


def _bochs(path: Path) -> None:
    """A growing Bochs redolog of 2 MiB with an empty catalog (qemu's bochs driver reads it)."""
    header = b"Bochs Virtual HD Image".ljust(32, b"\0") + b"Redolog".ljust(16, b"\0") + b"Growing".ljust(16, b"\0")
    header += struct.pack("<II", 0x00020000, 512) + struct.pack("<IIIIQ", 512, 512, 4096, 0, 512 * 4096)
    path.write_bytes((header.ljust(512, b"\0") + b"\xff" * 2048).ljust(MiB, b"\0"))


def _cloop(path: Path) -> None:
    """A cloop v2 image of one 64 KiB zlib block."""
    block = zlib.compress(bytes(65536))
    start = 128 + 8 + 16
    body = CLOOP_MAGIC.ljust(128, b"\0") + struct.pack(">II", 65536, 1) + struct.pack(">QQ", start, start + len(block))
    path.write_bytes((body + block).ljust(4096, b"\0"))


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("refused-formats")
    _qemu_create(directory / "disk.qed", "qed")
    _qemu_create(directory / "disk.hdd", "parallels")
    _qemu_create(directory / "disk.qcow", "qcow")
    _bochs(directory / "disk.bochs")
    _cloop(directory / "disk.cloop")
    (directory / "disk.qed.gz").write_bytes(gzip.compress((directory / "disk.qed").read_bytes()))
    (directory / "disk.vmdk3").write_bytes(b"COWD" + struct.pack("<II", 1, 3) + bytes(MiB - 12))
    # Raw data one byte away from a magic: raw, as qemu-img sees it too.
    (directory / "near-miss.raw").write_bytes(b"QED\x01" + os.urandom(MiB - 4))
    return directory


@pytest.fixture(scope="module")
def format_server(formats_dir: Path, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer(formats_dir, tmp_path_factory.mktemp("nginx-formats"), pki) as server:
        yield server


def probed_format(path: Path) -> str:
    info = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=True)
    return str(json.loads(info.stdout)["format"])


def assert_invalid_format(run: ImportRun, name: str) -> None:
    assert run.returncode == 1, run.log
    assert run.message is not None
    assert run.message.reason == "InvalidImage", run.message
    assert run.message.retryable is False
    assert run.message.message.startswith(f"Unable to process data: Invalid format {name}: "), run.message
    assert list(run.data.iterdir()) == []
    assert list(run.scratch.iterdir()) == []


@pytest.mark.parametrize("file", sorted(REFUSED))
def test_qemu_recognised_formats_are_refused_over_http(file: str, formats_dir: Path, format_server: NginxServer,
                                                       run_importer: Runner) -> None:
    qemu_format, name = REFUSED[file]
    assert probed_format(formats_dir / file) == qemu_format  # what qemu-img itself makes of the file
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": format_server.url(file)})
    assert_invalid_format(run, name)


def test_vmdk_version_3_is_refused(format_server: NginxServer, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": format_server.url("disk.vmdk3")})
    assert_invalid_format(run, "vmdk (version 3, ESX 2 sparse)")


def test_data_without_a_known_magic_imports_as_raw(formats_dir: Path, format_server: NginxServer,
                                                   run_importer: Runner) -> None:
    source = formats_dir / "near-miss.raw"
    assert probed_format(source) == "raw"
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": format_server.url("near-miss.raw")})
    assert run.returncode == 0, run.log
    assert run.disk.read_bytes() == source.read_bytes()


async def _upload(port: int, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.post(f"http://127.0.0.1:{port}/v1beta1/upload", data=io.BytesIO(body)) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("file", ["disk.qed", "disk.hdd", "disk.bochs", "disk.cloop", "disk.qcow"])
async def test_upload_of_a_refused_format_is_a_400_and_writes_nothing(file: str, formats_dir: Path,
                                                                      tmp_path: Path) -> None:
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    data.mkdir()
    scratch.mkdir()
    server = UploadServer(load_config({"CDI_UPLOAD_INSECURE": "true", "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": "0",
                                       "CDI_DATA_PATH": str(data), "CDI_SCRATCH_PATH": str(scratch),
                                       "CDI_TERMINATION_LOG": str(tmp_path / "termination-log")}))
    port = await server.start()
    try:
        status, text = await _upload(port, (formats_dir / file).read_bytes())
    finally:
        await server.stop()
    name = REFUSED[file][1]
    assert status == 400, text
    assert text.startswith(f"Saving stream failed: Invalid format {name}: "), text
    assert list(data.iterdir()) == [] and list(scratch.iterdir()) == []
