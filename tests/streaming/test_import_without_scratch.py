"""Through the real `cdi-importer` over HTTP: qcow2, compressed or not, needs no scratch space; formats
that still do say which format and why; a large qcow2 streams in bounded memory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.importer.conftest import Runner
from tests.streaming.qcow2_builders import MiB, qemu_img, write_raw
from tests.support.catalog import ImageSet
from tests.support.nginx import Location, NginxServer
from tests.support.peakrss import run_with_peak_rss
from tests.support.tls import TestPKI

RSS_LIMIT_KIB = 256 * 1024


@pytest.mark.parametrize("name", ["disk.qcow2", "disk-compressed.qcow2", "disk.qcow2.gz", "disk.qcow2.xz",
                                  "disk-multi.qcow2.zst"])
def test_qcow2_imports_without_scratch_space(name: str, images: ImageSet, nginx: NginxServer,
                                             run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url(name)}, scratch=False)
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.scratch_space_required is False
    assert run.disk_sha256() == images.reference_sha256


@pytest.mark.parametrize("name", ["disk.vmdk", "disk-stream.vmdk", "disk.vdi", "disk.vhd", "disk.vhdx"])
def test_random_access_formats_are_read_in_place_when_the_server_serves_ranges(
        name: str, images: ImageSet, nginx: NginxServer, run_importer: Runner) -> None:
    """No scratch volume at all: qemu-img reads the image through nbdkit's range requests."""
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url(name)}, scratch=False)
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.message == "Import Complete"
    assert run.message.scratch_space_required is False
    assert "so it is read in place instead" in run.log
    assert run.disk_sha256() == images.reference_sha256


def test_in_place_reads_carry_the_sources_trust_and_credentials(images: ImageSet, nginx: NginxServer, pki: TestPKI,
                                                                tmp_path: Path, run_importer: Runner) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url("disk.vhdx", tls=True, auth=True),
                        "IMPORTER_CERT_DIR": str(certs), "IMPORTER_ACCESS_KEY_ID": "admin",
                        "IMPORTER_SECRET_KEY": "password"}, scratch=False)
    assert run.returncode == 0, run.log
    assert "so it is read in place instead" in run.log and "password" not in run.log
    assert run.disk_sha256() == images.reference_sha256


@pytest.mark.parametrize(("location", "extra", "why"), [
    (Location.NO_RANGES, {}, "the server does not honour range requests"),
    (Location.FILES, {"IMPORTER_CHECKSUM": "sha256:" + "0" * 64}, "a checksum can only be verified on a download"),
])
def test_vmdk_asks_for_scratch_space_and_says_why(location: Location, extra: dict[str, str], why: str,
                                                  nginx: NginxServer, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url("disk.vmdk", location=location),
                        **extra}, scratch=False)
    assert run.returncode == 0, run.log
    assert run.message is not None and run.message.scratch_space_required is True
    assert ("vmdk needs scratch space: vmdk images are converted by qemu-img, which needs random access to a whole "
            f"file, and it cannot be read in place: {why}") in run.message.message
    assert list(run.data.iterdir()) == []


def test_unusual_qcow2_is_declined_to_scratch_with_the_reason(nginx: NginxServer, run_importer: Runner) -> None:
    url = nginx.url("corrupt-header.qcow2", location=Location.NO_RANGES)
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url}, scratch=False)
    assert run.message is not None and run.message.scratch_space_required is True
    assert "the streaming qcow2 reader declined it: the L1 table has 2147483647 entries" in run.log


def test_a_declined_qcow2_read_in_place_is_refused_by_qemu_img(nginx: NginxServer, run_importer: Runner) -> None:
    """With ranges, qemu-img itself opens the declined image in place, and refuses it as corrupt, before
    any scratch volume would have been made for it."""
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url("corrupt-header.qcow2")},
                       scratch=False)
    assert run.returncode == 1
    assert run.message is not None and (run.message.reason, run.message.retryable) == ("InvalidImage", False)
    assert "L1 table too large" in run.message.message
    assert list(run.data.iterdir()) == []


def test_large_compressed_qcow2_streams_in_bounded_memory(pki: TestPKI, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    raw = tmp_path / "big.raw"
    virtual = 4 << 30
    write_raw(raw, virtual, [(offset, 4 * MiB) for offset in range(0, virtual, 256 * MiB)])
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", raw, www / "big.qcow2")
    raw.unlink()
    (tmp_path / "data").mkdir()
    env = {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "CDI_DATA_PATH": str(tmp_path / "data"),
           "CDI_SCRATCH_PATH": str(tmp_path / "none"), "CDI_TERMINATION_LOG": str(tmp_path / "term"),
           "CDI_METRICS_ADDR": "127.0.0.1:0"}
    with NginxServer(www, tmp_path / "nginx", pki) as nginx:
        env["IMPORTER_ENDPOINT"] = nginx.url("big.qcow2")
        log = tmp_path / "importer.log"
        with log.open("wb") as stderr:
            returncode, peak_kib = run_with_peak_rss([sys.executable, "-m", "importer"], env, stderr)
    assert returncode == 0, log.read_text()
    disk = tmp_path / "data" / "disk.img"
    assert disk.stat().st_size == virtual
    assert disk.stat().st_blocks * 512 < 128 * MiB
    assert 0 < peak_kib < RSS_LIMIT_KIB, f"peak RSS {peak_kib // 1024} MiB"
