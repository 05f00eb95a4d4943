"""The measured pipelines, one function per way of getting an image onto a disk.

For every HTTP case: the limit (`curl -o /dev/null`, and the reference decompressor alone for .xz and
.gz), our `cdi-importer` end to end (also with a CPU hog on the other core, and ten at once through the
same link), a DataVolume through `cdi serve` (with the `cdi` commands a user runs, and created and
awaited from this process, which times the control plane alone), download-to-scratch followed by
`qemu-img convert` (upstream since PR#2832), and nbdkit's curl plugin with the readahead and retry
filters feeding `qemu-img convert` (upstream before it). Uploads, from the far side of the link:
`cdi image-upload` through the upload proxy and upload server (whole command, and its transfer
phase), against a plain single-hop HTTP PUT of the same file. Used by
`bench.__main__`; each returns a `measure.Sample`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.measure import CpuHog, Sample, run, run_many
from bench.network import Network, in_client, in_server
from cdi.cli.state import open_cluster
from tests.support.controlplane import release_storage


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    qemu_format: str
    decompressor: str | None = None  # xz / gzip: the reference tool, and nbdkit's filter of that name
    local_convert: bool = False  # compressed qcow2: qemu-img's own local conversion is the reference
    random_access: bool = False  # qemu-img must convert it with random access: scratch, or read in place


CASES = (
    Case("qcow2", "disk.qcow2", "qcow2"),
    Case("qcow2-compressed", "disk-c.qcow2", "qcow2", local_convert=True),
    Case("raw.xz", "disk.raw.xz", "raw", "xz"),
    Case("raw.gz", "disk.raw.gz", "raw", "gzip"),
    Case("vmdk", "disk.vmdk", "vmdk", random_access=True),
    Case("qcow2-64g-sparse", "sparse.qcow2", "qcow2"),
)


class Workspace:
    """Fresh data and scratch directories for each run, on the same filesystem as the cache."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.scratch = root / "scratch"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def reset(self) -> None:
        for path in (self.data, self.scratch):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        subprocess.run(["sync"], check=False)


def curl_limit(net: Network, case: Case, ws: Workspace) -> Sample:
    return run(in_client(["curl", "-sS", "-f", "-o", "/dev/null", f"{net.base_url}/{case.file}"]),
               log=ws.logs / f"{case.name}-curl.log")


def decompressor(images: Path, case: Case, ws: Workspace) -> Sample:
    """The reference decompressor alone on the local file: `xz -dc`/`gzip -dc` to /dev/null, or for a
    compressed qcow2 `qemu-img convert` into memory (/dev/shm)."""
    if case.local_convert:
        out = Path("/dev/shm/cdibench-local.raw")
        try:
            return run(["qemu-img", "convert", "-t", "writeback", "-f", case.qemu_format, "-O", "raw",
                        str(images / case.file), str(out)], log=ws.logs / f"{case.name}-decompress.log")
        finally:
            out.unlink(missing_ok=True)
    assert case.decompressor
    with open(os.devnull, "wb") as null:
        return run([case.decompressor, "-dc", str(images / case.file)], stdout=null.fileno(),
                   log=ws.logs / f"{case.name}-decompress.log")


def _importer_env(net: Network, case: Case, data: Path, scratch: Path, termination: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": f"{net.base_url}/{case.file}",
            "CDI_DATA_PATH": str(data), "CDI_SCRATCH_PATH": str(scratch), "CDI_TERMINATION_LOG": str(termination),
            "CDI_METRICS_ADDR": "127.0.0.1:0"}


def ours(net: Network, case: Case, ws: Workspace, *, scratch: bool = True, hog: bool = False) -> Sample:
    """`cdi-importer` with an empty scratch directory it may use, or (`scratch=False`) with none at all;
    with `hog`, while a busy loop keeps the second CPU busy."""
    ws.reset()
    if not scratch:
        ws.scratch.rmdir()
    env = _importer_env(net, case, ws.data, ws.scratch, ws.root / "termination.log")
    suffix = ("" if scratch else "-no-scratch") + ("-busy" if hog else "")
    with CpuHog(1) if hog else contextlib.nullcontext():
        sample = run(in_client([sys.executable, "-m", "importer"]), env=env, scratch=ws.scratch,
                     log=ws.logs / f"{case.name}-ours{suffix}.log")
    if sample.returncode == 0 and "scratchSpaceRequired\":true" in (ws.root / "termination.log").read_text():
        sample.returncode = 42
    return sample


def ours_concurrently(net: Network, case: Case, ws: Workspace, count: int) -> Sample:
    """`count` importers of the same image at once, each into its own directory: the link is shared."""
    ws.reset()
    dirs = [ws.data / f"import-{i}" for i in range(count)]
    envs = []
    for data in dirs:
        (data / "scratch").mkdir(parents=True)
        envs.append(_importer_env(net, case, data, data / "scratch", data / "termination.log"))
    return run_many([in_client([sys.executable, "-m", "importer"])] * count, envs=envs,
                    logs=[ws.logs / f"{case.name}-ours-x{count}-{i}.log" for i in range(count)])


def scratch_convert(net: Network, case: Case, ws: Workspace) -> Sample:
    ws.reset()
    tmp = ws.scratch / "tmpimage"
    fetch = f"curl -sS -f {net.base_url}/{case.file}"
    if case.decompressor:
        fetch += f" | {case.decompressor} -dc"
    script = (f"set -e -o pipefail; {fetch} > {tmp}; "
              f"qemu-img convert -t writeback -f {case.qemu_format} -O raw {tmp} {ws.data / 'disk.img'}; rm -f {tmp}")
    return run(in_client(["bash", "-c", script]), scratch=ws.scratch, log=ws.logs / f"{case.name}-scratch.log")


def nbdkit_convert(net: Network, case: Case, ws: Workspace) -> Sample:
    ws.reset()
    sock, pid = ws.root / "nbdkit.sock", ws.root / "nbdkit.pid"
    for path in (sock, pid):
        path.unlink(missing_ok=True)
    filters = ([f"--filter={case.decompressor}"] if case.decompressor else []) + ["--filter=readahead",
                                                                                  "--filter=retry"]
    nbdkit = (f"nbdkit --foreground --readonly --exit-with-parent -U {sock} --pidfile {pid} {' '.join(filters)} "
              f"curl 'header=User-Agent: cdi-nbdkit-importer' retry-exponential=no url={net.base_url}/{case.file}")
    script = (f"set -e; {nbdkit} & NBD=$!; for i in $(seq 300); do [ -s {pid} ] && break; sleep 0.05; done; "
              f"qemu-img convert -t writeback -f {case.qemu_format} -O raw 'nbd+unix:///?socket={sock}' "
              f"{ws.data / 'disk.img'}; kill $NBD; wait $NBD || true")
    return run(in_client(["bash", "-c", script]), scratch=ws.scratch, log=ws.logs / f"{case.name}-nbdkit.log")


class ControlPlane:
    """`cdi serve` in the client namespace, driven by the `cdi` CLI (which only needs the state dir)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "CDI_HOME": str(home)}
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ControlPlane:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        cdi = str(Path(sys.executable).with_name("cdi"))
        with (self.home / "serve.log").open("ab") as log:
            self._process = subprocess.Popen(in_client([cdi, "serve", "--pod-runtime", "process"]), env=self.env,
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.cdi("get", "cdiconfig", "config").returncode == 0 and "started" in self.log():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"cdi serve did not start:\n{self.log()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        release_storage(self.home)  # the volumes' mounts and loop devices, as the e2e tests release them

    def log(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")

    def cdi(self, *args: str, text: str | None = None, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        cdi = str(Path(sys.executable).with_name("cdi"))
        return subprocess.run([cdi, *args], env=self.env, input=text, capture_output=True, text=True, check=False,
                              timeout=timeout)

    def datavolume(self, name: str, url: str, size_gib: int, ws: Workspace) -> Sample:
        manifest = DV.format(name=name, url=url, size=size_gib)
        start = time.monotonic()
        self.cdi("apply", "-f", "-", text=manifest)
        waited = self.cdi("wait", f"dv/{name}", "--for=condition=Ready", "--timeout=15m")
        wall = time.monotonic() - start
        (ws.logs / f"dv-{name}.log").write_text(waited.stdout + waited.stderr)
        self.cdi("delete", "dv", name, "--wait")
        return Sample(wall, 0, 0, waited.returncode)

    def datavolume_direct(self, name: str, url: str, size_gib: int, ws: Workspace) -> Sample:
        """The same DataVolume created and awaited through the store from this process (no `cdi` command
        starts): what the control plane itself adds to the importer — volume set-up, pod start, status
        round-trips — timed from the create to the first read that shows Ready (read every 20 ms)."""
        wall, code = asyncio.run(self._direct(name, url, size_gib))
        self.cdi("delete", "dv", name, "--wait")
        return Sample(wall, 0, 0, code)

    async def _direct(self, name: str, url: str, size_gib: int) -> tuple[float, int]:
        async with open_cluster(self.home, warn=False) as cluster:
            manifest = yaml.safe_load(DV.format(name=name, url=url, size=size_gib))
            manifest["metadata"]["namespace"] = "default"
            start = time.monotonic()
            await cluster.create(manifest)
            deadline = start + 900
            while time.monotonic() < deadline:
                dv = await cluster.get("cdi.kubevirt.io/v1beta1", "DataVolume", name, "default")
                status = dv.get("status") or {}
                if status.get("phase") == "Failed":
                    return time.monotonic() - start, 1
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
                    return time.monotonic() - start, 0
                await asyncio.sleep(0.02)
            return time.monotonic() - start, 124

    def upload(self, net: Network, name: str, image: Path, size_gib: int, ws: Workspace) -> tuple[Sample, float | None]:
        """`cdi image-upload` from the far side of the link: the whole command, and its transfer phase (from
        the first chunk sent to the last one acknowledged, as the client reports it)."""
        log = ws.logs / f"upload-{name}.log"
        log.unlink(missing_ok=True)
        sample = run(in_server([str(Path(sys.executable).with_name("cdi")), "image-upload", "dv", name, "--size",
                                f"{size_gib}Gi", "--image-path", str(image), "--insecure", "--wait-secs", "120",
                                "--uploadproxy-url", net.upload_proxy_url]),
                     env=self.env, log=log)
        found = re.search(r"upload done: \d+ bytes in ([0-9.]+) s", log.read_text(errors="replace"))
        self.cdi("delete", "dv", name, "--wait")
        return sample, float(found.group(1)) if found else None


DV = """apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: {name}
spec:
  storage:
    resources:
      requests:
        storage: {size}Gi
    storageClassName: local
  source:
    http:
      url: "{url}"
"""


def single_hop_upload(net: Network, image: Path, ws: Workspace) -> Sample:
    """The same bytes in one plain HTTP PUT straight onto the cluster side's disk (nginx DAV), across the
    same shaped link, with no proxy, no TLS and no conversion."""
    argv = ["curl", "-sS", "-f", "-H", "Expect:", "-T", str(image), f"{net.upload_sink_url}/{image.name}"]
    return run(in_server(argv), log=ws.logs / "upload-single-hop.log")
