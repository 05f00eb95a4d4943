"""Building the project's image for tests: `scripts/image.sh` (cached by a hash of the tree), once per
session, by whichever test package asks first (`tests/image` tests the image itself; `tests/pods` and
`tests/e2e` run worker pods in it).

`unavailable_reason` says why podman cannot be used here (missing and not installable: not root, or no
apt), so that callers skip with that reason; `build` returns the image's reference or fails with the
script's output.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image.sh"
BUILD_TIMEOUT = 900.0


class BuildFailed(Exception):
    """scripts/image.sh failed."""


def script(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def unavailable_reason() -> str | None:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and installing needs root and apt (scripts/image.sh)"
    return None


@functools.cache
def build() -> str:
    """The reference of the image for the current tree (built now if needed); `BuildFailed` otherwise."""
    proc = script([], timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        raise BuildFailed(f"scripts/image.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]
