"""`--pod-runtime auto` (the default of `cdi serve` and `cdi node`) runs worker pods in the image built from
this very tree, and as processes when that image is not there (`cdi.cli.podruntime`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cdi.cli.errors import CliError
from cdi.cli.podruntime import IMAGE_SCRIPT, launcher_for, tree_image
from cdi.embedded.pods.containers import ContainerLauncher
from tests.image.conftest import Image


async def test_the_tree_image_is_the_one_image_sh_builds(image: Image) -> None:
    assert IMAGE_SCRIPT.is_file()
    assert await tree_image() == image.reference


async def test_auto_runs_pods_in_the_image_of_this_tree(image: Image) -> None:
    launcher = await launcher_for("auto", None)
    assert isinstance(launcher, ContainerLauncher)
    assert launcher.image == image.reference


async def test_auto_runs_processes_when_the_trees_image_is_not_built(image: Image, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An image built from other code is never used by `auto`: here a script naming a tag never built."""
    stale = tmp_path / "image.sh"
    stale.write_text("echo localhost/pycdi:000000000000\n")
    caplog.set_level(logging.INFO)
    chosen = await tree_image(stale)
    assert chosen == "localhost/pycdi:000000000000"
    assert await launcher_for("auto", chosen) is None
    assert "worker pods run as processes: image localhost/pycdi:000000000000 not found" in caplog.text


async def test_process_never_tries_and_container_insists(image: Image) -> None:
    assert await launcher_for("process", None) is None
    with pytest.raises(CliError, match="the container pod runtime cannot run: image localhost/pycdi:000000000000"):
        await launcher_for("container", "localhost/pycdi:000000000000")
