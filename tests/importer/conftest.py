"""Runs the real `cdi-importer` entrypoint as a subprocess, the way a pod would, and reads back what a
controller would see: the exit code, the termination message, and the volume's files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdi.contracts.termination import TerminationMessage


@dataclass
class ImportRun:
    returncode: int
    message: TerminationMessage | None
    data: Path
    scratch: Path
    log: str

    @property
    def disk(self) -> Path:
        return self.data / "disk.img"

    def disk_sha256(self, length: int | None = None) -> str:
        digest = hashlib.sha256()
        with self.disk.open("rb") as f:
            remaining = length if length is not None else self.disk.stat().st_size
            while remaining > 0 and (block := f.read(min(remaining, 1 << 20))):
                digest.update(block)
                remaining -= len(block)
        return digest.hexdigest()


Runner = Callable[..., ImportRun]


@pytest.fixture
def run_importer(tmp_path: Path) -> Iterator[Runner]:
    counter = iter(range(1000))

    def run(env: Mapping[str, str], *, data: Path | None = None, scratch: Path | bool | None = True,
            timeout: float = 120) -> ImportRun:
        n = next(counter)
        data_path = data or tmp_path / f"data{n}"
        if data is None:
            data_path.mkdir()
        scratch_path = tmp_path / f"scratch{n}"
        if scratch is True:
            scratch_path.mkdir()
        termination = tmp_path / f"termination{n}"
        environ = {"PATH": os.environ["PATH"], "CDI_DATA_PATH": str(data_path), "CDI_SCRATCH_PATH": str(scratch_path),
                   "CDI_TERMINATION_LOG": str(termination), "CDI_METRICS_ADDR": "127.0.0.1:0",
                   "CDI_EXTRA_HEADERS_DIR": str(tmp_path / "no-extra-headers"),
                   "IMPORTER_PROXY_CERT_DIR": str(tmp_path / "no-proxy-certs"), **env}
        proc = subprocess.run([sys.executable, "-m", "importer"], env=environ, capture_output=True, text=True,
                              timeout=timeout, check=False)
        message = TerminationMessage.parse(termination.read_text()) if termination.exists() else None
        return ImportRun(proc.returncode, message, data_path, scratch_path, proc.stderr)

    yield run
