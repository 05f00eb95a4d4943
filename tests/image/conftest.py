"""The project's container image, built once per session by `scripts/image.sh` and run through it.

The script tags the image with a hash of the Dockerfile and the sources and keeps podman's storage in
a per-user cache, so only the first session after a change pays for a build (about a minute; two
with the base made by mmdebstrap); later sessions cost a `podman image exists`. The tests here are
skipped only where podman or mmdebstrap cannot run: missing and not installable (not root, no apt).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from tests.image.building import BUILD_TIMEOUT, BuildFailed, build, script, unavailable_reason

__all__ = ["BUILD_TIMEOUT", "Image"]


@dataclass(frozen=True)
class Image:
    """A built image and the way to run commands in it with the script's podman settings."""

    reference: str

    def run(self, command: Sequence[str], *, options: Sequence[str] = (), timeout: float = 120) -> (
            subprocess.CompletedProcess[str]):
        """`podman run --rm --network host [options] --entrypoint command[0] IMAGE command[1:]`."""
        return script(["run", *options, "--", *command], timeout=timeout)

    def size(self) -> int:
        """The image's size in bytes, as `podman images` reports it."""
        proc = script(["podman", "image", "inspect", "--format", "{{.Size}}", self.reference], timeout=60)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())


@pytest.fixture(scope="session")
def image() -> Image:
    """The image scripts/image.sh builds (or finds already built) for the current tree."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        return Image(build())
    except BuildFailed as e:
        pytest.fail(str(e))
