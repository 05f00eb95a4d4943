"""`--pod-runtime` and `--pod-image` of `cdi serve` and `cdi node`: how the local node runs worker pods.

`auto` (the default of both) runs them as podman containers where podman works and the image holds *this*
code, and as processes otherwise, saying why in the log. "This code" matters: a container image built
from an older tree would run older importers under newer controllers. In a checkout, the image is
therefore the one `bash scripts/image.sh` builds from the tree as it is now (`image.sh ref` names it
without building, by the same hash of the build context); when that one is not built, pods run as
processes until it is. An installed package (no `scripts/`) uses `--pod-image` as given, by default
the release's image. `container` insists (and fails with the reason); `process` never tries. Under
`cdi node` against a real API server, an import and an upload in containers are tested end to end
(tests/e2e/test_kubernetes_containers.py, test_kubernetes_upload.py). The launcher itself is
`cdi.embedded.pods.containers`. `--stop-pods-on-exit` (`stop_pods`) decides what happens to running
worker pods when the command stops: by default they keep running and the next run re-attaches to them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from cdi.cli.errors import CliError
from cdi.embedded.pods.containers import (
    DEFAULT_IMAGE,
    RUNTIMES,
    ContainerLauncher,
    PodmanSettings,
    RuntimeUnavailable,
    choose_launcher,
)
from cdi.embedded.pods.runner import PodRunner

log = logging.getLogger("cdi.node")
IMAGE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "image.sh"


def add_options(parser: argparse.ArgumentParser, *, default: str = "auto") -> None:
    parser.add_argument("--pod-runtime", choices=RUNTIMES, default=default,
                        help=f"how worker pods run (default {default}): auto (podman containers of the image of "
                             "this code where it is built, processes otherwise), container (fails where it "
                             "cannot) or process")
    parser.add_argument("--pod-image", default=None,
                        help="the image of the container runtime (default: the one `bash scripts/image.sh` builds "
                             f"from this checkout, else {DEFAULT_IMAGE})")
    parser.add_argument("--stop-pods-on-exit", action="store_true",
                        help="stop the worker pods' containers when stopping (default: they keep running, and the "
                             "next run on this home picks them up, so restarts and upgrades interrupt nothing)")


async def stop_pods(runner: PodRunner, stop: bool, home: Path) -> None:
    """On the way out: leave the worker pods' containers running for the next run to pick up (the
    default), or stop them (`--stop-pods-on-exit`)."""
    if stop:
        await runner.close()
        return
    left = await runner.detach()
    if left:
        log.info("%d worker container(s) keep running: the next run on %s picks them up "
                 "(--stop-pods-on-exit stops them)", left, home)


async def tree_image(script: Path = IMAGE_SCRIPT) -> str | None:
    """The reference `scripts/image.sh` builds this checkout to; None outside a checkout."""
    if not script.is_file():
        return None
    process = await asyncio.create_subprocess_exec("bash", str(script), "ref", stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        log.warning("`%s ref` failed (%s): worker pods cannot use this checkout's image", script,
                    err.decode(errors="replace").strip())
        return None
    return out.decode().strip().splitlines()[-1] if out.strip() else None


async def launcher_for(runtime: str, image: str | None) -> ContainerLauncher | None:
    """The launcher `--pod-runtime`/`--pod-image` ask for (None: processes); `CliError` when `container`
    cannot run."""
    if runtime == "process":
        return None
    chosen = image or await tree_image() or DEFAULT_IMAGE
    try:
        return await choose_launcher(runtime, PodmanSettings.from_environment(os.environ), chosen)
    except RuntimeUnavailable as e:
        raise CliError(str(e)) from e
