"""Peak memory stays flat whatever the image size: a 4 GiB disk imports in well under 256 MiB RSS."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import zstandard

from tests.support.nginx import NginxServer
from tests.support.peakrss import run_with_peak_rss
from tests.support.tls import TestPKI

MiB = 1 << 20
RSS_LIMIT_KIB = 256 * 1024


def build_sparse_zstd(path: Path, virtual_mib: int) -> None:
    """Frames of 16 MiB of zeros (compressed once, repeated) with a 1 MiB random frame every 512 MiB."""
    compressor = zstandard.ZstdCompressor(level=1)
    zeros = compressor.compress(bytes(16 * MiB))
    data = compressor.compress(random.Random(7).randbytes(MiB))
    with path.open("wb") as f:
        written = 0
        while written < virtual_mib:
            if written % 512 == 0:
                f.write(data)
                written += 1
            f.write(zeros)
            written += 16
        f.truncate(f.tell())


def test_peak_rss_is_bounded(pki: TestPKI, tmp_path: Path) -> None:
    name = "memory-4g.raw.zst"
    www = tmp_path / "www"
    www.mkdir()
    build_sparse_zstd(www / name, 4096)
    (tmp_path / "data").mkdir()
    with NginxServer(www, tmp_path / "nginx", pki) as nginx:
        _import_and_measure(nginx.url(name), tmp_path)


def _import_and_measure(url: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url,
           "CDI_DATA_PATH": str(tmp_path / "data"), "CDI_SCRATCH_PATH": str(tmp_path / "none"),
           "CDI_TERMINATION_LOG": str(tmp_path / "term"), "CDI_METRICS_ADDR": "127.0.0.1:0"}
    log = tmp_path / "importer.log"
    with log.open("wb") as stderr:
        returncode, peak_kib = run_with_peak_rss([sys.executable, "-m", "importer"], env, stderr)
    assert returncode == 0, log.read_text()
    disk = tmp_path / "data" / "disk.img"
    assert disk.stat().st_size >= 4096 * MiB
    assert disk.stat().st_blocks * 512 < 64 * MiB  # only the random frames were written
    assert 0 < peak_kib < RSS_LIMIT_KIB, f"peak RSS {peak_kib // 1024} MiB"
