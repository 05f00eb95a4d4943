"""The project's container image, built once per session by `scripts/image.sh` and run through it.

The script tags the image with a hash of the Dockerfile and the sources and keeps podman's storage in
a per-user cache, so only the first session after a change pays for a build (about a minute; two
with the base made by mmdebstrap); later sessions cost a `podman image exists`. The tests here are
skipped only where podman or mmdebstrap cannot run: missing and not installable (not root, no apt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image.sh"
BUILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class Image:
    """A built image and the way to run commands in it with the script's podman settings."""

    reference: str

    def run(self, command: Sequence[str], *, options: Sequence[str] = (), timeout: float = 120) -> (
            subprocess.CompletedProcess[str]):
        """`podman run --rm --network host [options] --entrypoint command[0] IMAGE command[1:]`."""
        return _script(["run", *options, "--", *command], timeout=timeout)

    def size(self) -> int:
        """The image's size in bytes, as `podman images` reports it."""
        proc = _script(["podman", "image", "inspect", "--format", "{{.Size}}", self.reference], timeout=60)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())


def _script(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def _unavailable_reason() -> str | None:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and installing needs root and apt (scripts/image.sh)"
    return None


@pytest.fixture(scope="session")
def image() -> Image:
    """The image scripts/image.sh builds (or finds already built) for the current tree."""
    reason = _unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    proc = _script([], timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"scripts/image.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Image(proc.stdout.strip().splitlines()[-1])
