"""End-to-end fixtures: a real `cdi serve` per test, with its own home directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane, release_storage


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path / "home")
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        release_storage(plane.home)
