"""`python -m bench.container_memory`: the importer's memory under upstream's default limits, in a
container (issue 16, item 3). Run on purpose, as root, never by the test suite.

Each image is served by nginx on loopback and imported by the real importer pod, run by the embedded
pod runner's container runtime (podman, the project's image from scripts/image.sh) as uid 107 with
upstream's 600M memory and 750m CPU limits. The figures come from the run's own memory cgroup, which
holds the limit (cdi.embedded.pods.cgroups): the peak it charged, how often the limit was hit, and
whether the importer was OOMKilled. The images, each a few MiB of random data spread over a sparse
disk, are made in `bench/.cache/container-memory/` and kept:

    20 GiB sparse qcow2                         (tests/pods/test_memory_limits.py imports it too)
    4 GiB raw, gzip -1, one member              every zero through the compressor: ~35 s to make
    4 GiB raw, multi-member gzip                as the test suite makes it, in a second
    4 GiB raw, xz -0, zstd -1

Prints a table (peak / limit, time) and writes it to `bench/results/<date>-container-memory.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cdi.embedded import EmbeddedCluster
from cdi.embedded.pods.containers import ContainerLauncher, PodmanSettings, probe, usage_of
from cdi.embedded.pods.runner import PodRunner
from tests.image.building import build
from tests.pods.bigimages import (
    GiB,
    Layout,
    MiB,
    check_disk,
    make_gzip_raw,
    make_gzip_raw_single,
    make_qcow2,
    make_raw,
    scattered,
)
from tests.pods.support import bind, claim, container_status, phase, settle, storage_class
from tests.pods.test_memory_limits import importer_pod
from tests.support.nginx import NginxServer
from tests.support.tls import make_pki

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "container-memory"
RAW4 = scattered(4 * GiB, (0, 1000, 2500, 4095))
QCOW2 = scattered(20 * GiB, (0, 3 * 1024, 7 * 1024 + 5, 19 * 1024, 20 * 1024 - 1))


def _compressed(tool: list[str]) -> Callable[[Layout, Path], Path]:
    def make(layout: Layout, path: Path) -> Path:
        raw = make_raw(layout, path.with_suffix(".raw-tmp"))
        with path.open("wb") as out:
            subprocess.run([*tool, "-c", str(raw)], stdout=out, check=True)
        raw.unlink()
        return path
    return make


CASES: dict[str, tuple[Layout, Callable[[Layout, Path], Path]]] = {
    "20g.qcow2": (QCOW2, make_qcow2),
    "4g.raw.gz": (RAW4, make_gzip_raw_single),
    "4g-members.raw.gz": (RAW4, make_gzip_raw),
    "4g.raw.xz": (RAW4, _compressed(["xz", "-0", "-T2"])),
    "4g.raw.zst": (RAW4, _compressed(["zstd", "-q", "-1", "-T2"])),
}


def ensure_images(names: list[str]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = CACHE / name
        if not path.exists():
            started = time.monotonic()
            layout, make = CASES[name]
            make(layout, path.with_name(name + ".part"))
            path.with_name(name + ".part").rename(path)
            print(f"made {name} in {time.monotonic() - started:.1f} s", file=sys.stderr)


async def import_one(launcher: ContainerLauncher, nginx: NginxServer, name: str, work: Path) -> str:
    layout = CASES[name][0]
    volume = work / name / "pv"
    volume.mkdir(parents=True)
    async with EmbeddedCluster(work / name / "cluster.db", poll_interval=0.05) as cluster:
        runner = PodRunner(cluster, work / name / "state", launcher=launcher, retry_after=0.2)
        try:
            await cluster.create(storage_class("local", "Immediate"))
            await cluster.create(claim("dv"))
            await bind(cluster, "dv", volume)
            started = time.monotonic()
            await cluster.create(importer_pod("importer-big", nginx.url(name), layout.size))
            done = await settle(runner, cluster, "importer-big", phase("Succeeded", "Failed"), timeout=1800)
            seconds = time.monotonic() - started
        finally:
            await runner.close()
    assert done is not None
    terminated = container_status(done, "importer")["state"]["terminated"]
    usage = usage_of(launcher, done["metadata"]["uid"], "importer")
    checked = "ok" if terminated["exitCode"] == 0 and check_disk(layout, volume / "disk.img") else "-"
    peak = usage.peak / MiB if usage else float("nan")
    limit = (usage.limit or 0) / MiB if usage else float("nan")
    return (f"| {name} | {layout.size / GiB:g} GiB | {terminated['reason']} | {peak:.1f} MiB | {limit:.1f} MiB | "
            f"{peak / limit:.0%} | {usage.limit_hits if usage else '-'} | {seconds:.1f} s | {checked} |")


async def main(names: list[str]) -> int:
    settings = PodmanSettings.from_environment(os.environ)
    image = build()
    if (why := await probe(settings, image)) is not None:
        print(f"cannot run containers: {why}", file=sys.stderr)
        return 1
    ensure_images(names)
    launcher = ContainerLauncher(settings, image)
    rows = ["| image | virtual size | reason | peak | cgroup limit | peak/limit | limit hits | time | bytes |",
            "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-container-memory-") as tmp:
        work = Path(tmp)
        with NginxServer(CACHE, work / "nginx", make_pki(work / "pki")) as nginx:
            for name in names:
                rows.append(await import_one(launcher, nginx, name, work))
                print(rows[-1], flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M")
    report = "\n".join([f"# Importer memory in a container, 600M/750m limits ({stamp} UTC)", "", *rows, ""])
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{stamp}-container-memory.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated images (default: {','.join(CASES)})")
    sys.exit(asyncio.run(main([name for name in parser.parse_args().only.split(",") if name])))
