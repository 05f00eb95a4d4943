"""The README's main command: `cdi demo` starts the control plane, imports through a DataVolume and
verifies the checksum."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.controlplane import release_storage

pytestmark = pytest.mark.slow


def test_demo_ends_with_a_verified_checksum(tmp_path: Path) -> None:
    cdi = str(Path(sys.executable).with_name("cdi"))
    try:
        result = subprocess.run([cdi, "--home", str(tmp_path), "demo"], capture_output=True, text=True, timeout=300,
                                check=False)
    finally:
        release_storage(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout
    assert "checksum verified" in result.stdout
    assert "Traceback" not in result.stderr
