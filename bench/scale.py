"""`python -m bench.scale [--count N] [--backends embedded,kubernetes]`: the scale benchmark (issue 11).

For each backend: prepare it (a fresh embedded store, or etcd + kube-apiserver + a kube-controller-manager
running only garbage collection, namespaces and service accounts, with CDI's CRDs), create the default
StorageClass and the CDIConfig, start CDI's controllers in their own process (`bench.scale_controller`),
start the simulated node (`bench.scale_node`, kwok-style: no volume is provisioned, no importer runs),
create N blank DataVolumes as fast as a user's client may (20 qps, client-go's default limit, on both
backends; `--user-qps 0`: as fast as the store answers, a burst that keeps the controllers behind until
the end), wait until every one is Succeeded, stop the controllers and collect what they measured about
themselves.

Targets: ≤ 10 API requests per DataVolume besides watches, controller peak RSS ≤ 300 MiB, no reconcile
slower than 100 ms. `bench.scale_report` prints the table and writes `bench/results/<date>-scale.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import scale_apiserver, scale_report
from bench.scale_node import node, node_simulator
from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import AlreadyExists, NotFound
from cdi.cluster.protocol import Cluster, EventType, Object
from cdi.contracts.annotations import ANN_DEFAULT_STORAGE_CLASS
from cdi.contracts.deployment import NAMESPACE as INSTALL_NAMESPACE
from cdi.controllers import cdiconfig
from cdi.embedded import EmbeddedCluster
from cdi.kube import connect
from cdi.kube.transport import DEFAULT_QPS, NO_LIMIT, TokenBucket
from cdi.runtime.manager import Manager

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "scale-bench"
STORAGE_CLASS = "scale-local"
CREATORS = 8  # concurrent creates by the "user": enough that the client's rate limit, not latency, is the bound
POD_SECONDS = 1.0  # how long a simulated importer pod runs (a real blank import's pod lives for seconds)
USER_QPS, USER_BURST = 20.0, 30  # the user's client (default): client-go's and controller-runtime's former defaults
SIM_QPS, SIM_BURST = 2000.0, 2000  # the simulated node stands for many kubelets: it is not throttled
KUBE_CONTROLLERS = ("garbage-collector-controller", "namespace-controller", "serviceaccount-controller")


@dataclass
class Clients:
    user: Cluster  # creates the DataVolumes (paced by `create_all`, the same on both backends)
    sim: Cluster  # the simulated node and the observer; uncounted
    controller_args: list[str]
    server_metrics: Callable[[], str] | None = None  # the API server's /metrics page (Kubernetes only)


@asynccontextmanager
async def embedded(workdir: Path) -> AsyncIterator[Clients]:
    store = workdir / "store.db"
    async with EmbeddedCluster(store) as cluster:
        yield Clients(cluster, cluster, ["--backend", "embedded", "--store", str(store)])


@asynccontextmanager
async def kubernetes(workdir: Path) -> AsyncIterator[Clients]:
    from tests.support.backends import install_crds
    from tests.support.kubecluster import KubeCluster as ControlPlane
    from tests.support.kubecluster import kube_binaries

    with ControlPlane(kube_binaries(), workdir / "kube", controllers=KUBE_CONTROLLERS) as plane:
        install_crds(plane)
        # Pods are refused until the namespace's default ServiceAccount exists (ServiceAccount admission).
        plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": NAMESPACE}})
        # CDI's install namespace, where the controllers keep their Secrets (`cdi manifests` makes it).
        plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": INSTALL_NAMESPACE}})
        account = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"
        await eventually(lambda: asyncio.to_thread(_exists, plane, account), "the default ServiceAccount")
        async with await connect(plane.kubeconfig_path, qps=NO_LIMIT) as user, \
                await connect(plane.kubeconfig_path, qps=SIM_QPS, burst=SIM_BURST) as sim:
            yield Clients(user, sim, ["--backend", "kubernetes", "--kubeconfig", str(plane.kubeconfig_path)],
                          lambda: str(plane.kubectl("get", "--raw", "/metrics").stdout))


def datavolume(index: int) -> Object:
    return {"apiVersion": CDI_API_VERSION, "kind": "DataVolume",
            "metadata": {"name": f"blank-{index:05d}", "namespace": NAMESPACE},
            "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}}


def _exists(plane: Any, path: str) -> bool:
    try:
        plane.request("GET", path)
    except urllib.error.HTTPError as error:
        error.close()
        return False
    return True


async def prepare(cluster: Cluster) -> None:
    """What an administrator has before anyone creates a DataVolume: a namespace, a node, a default
    StorageClass (Immediate binding) and the CDIConfig."""
    with contextlib.suppress(AlreadyExists):
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    await cluster.create(node())
    await cluster.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                          "metadata": {"name": STORAGE_CLASS, "annotations": {ANN_DEFAULT_STORAGE_CLASS: "true"}},
                          "provisioner": "pycdi.local/hostpath", "volumeBindingMode": "Immediate",
                          "reclaimPolicy": "Delete"})
    await cdiconfig.ensure_config(cluster)


async def eventually(check: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def ready_for_users(cluster: Cluster) -> None:
    """The controllers have made the StorageProfile and filled the CDIConfig's status."""
    async def has_status(api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            return bool((await cluster.get(api_version, kind, name, namespace)).get("status"))
        except NotFound:
            return False

    await eventually(lambda: has_status(CDI_API_VERSION, "StorageProfile", STORAGE_CLASS), "the StorageProfile")
    await eventually(lambda: has_status(CDI_API_VERSION, "CDIConfig", cdiconfig.CONFIG_NAME), "the CDIConfig")


class Tracker:
    """Watches DataVolumes (through the simulator's informer) and notes when each first reads Succeeded."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.created: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.phases: dict[str, str] = {}
        self.all_done = asyncio.Event()

    def __call__(self, event_type: EventType, obj: Object) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase") or "-"
        self.phases[name] = phase
        if phase == "Succeeded" and name not in self.succeeded:
            self.succeeded[name] = time.monotonic()
            if len(self.succeeded) >= self.count:
                self.all_done.set()

    def progress(self) -> str:
        tally: dict[str, int] = {}
        for phase in self.phases.values():
            tally[phase] = tally.get(phase, 0) + 1
        return ", ".join(f"{p} {n}" for p, n in sorted(tally.items()))


async def create_all(cluster: Cluster, count: int, tracker: Tracker, qps: float) -> None:
    """Create the DataVolumes from `CREATORS` tasks, at most `qps` a second (burst `USER_BURST`; 0: no limit)."""
    queue = iter(range(count))
    bucket = TokenBucket(qps, USER_BURST)

    async def creator() -> None:
        for index in queue:
            await bucket.take()
            tracker.created[f"blank-{index:05d}"] = time.monotonic()
            await cluster.create(datavolume(index))

    await asyncio.gather(*(creator() for _ in range(CREATORS)))


class ControllerProcess:
    """`python -m bench.scale_controller` as a child process, and the files it answers with."""

    def __init__(self, workdir: Path, args: list[str], *, profile: bool = False) -> None:
        self.report = workdir / "controller.json"
        self.log = workdir / "controller.log"
        profiler = ["-m", "cProfile", "-o", str(workdir / "controller.prof")] if profile else []
        with self.log.open("wb") as out:
            self._popen = subprocess.Popen([sys.executable, *profiler, "-m", "bench.scale_controller", *args,
                                            "--report", str(self.report)], cwd=ROOT, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT)

    async def _file(self, path: Path, what: str, timeout: float = 120.0) -> None:
        async def there() -> bool:
            if self._popen.poll() is not None:
                raise RuntimeError(f"the controller process exited ({self._popen.returncode}):\n{self.tail()}")
            return path.exists()
        await eventually(there, what, timeout)

    async def ready(self) -> None:
        await self._file(self.report.with_suffix(".ready"), "the controllers to start")

    async def baseline(self) -> None:
        self._popen.send_signal(signal.SIGUSR1)
        await self._file(self.report.with_suffix(".baseline"), "the controllers' baseline counts", 30.0)

    async def stop(self) -> dict[str, Any]:
        self._popen.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self._popen.wait, 120)
        if code != 0 or not self.report.exists():
            raise RuntimeError(f"the controller process ended with {code} and no report:\n{self.tail()}")
        report: dict[str, Any] = json.loads(self.report.read_text())
        return report

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def measure(backend: str, count: int, workdir: Path, timeout: float, profile: bool = False,
                  qps: float = DEFAULT_QPS, burst: int = 30, user_qps: float = USER_QPS,
                  pod_seconds: float = POD_SECONDS) -> dict[str, Any]:
    rate = f"{user_qps:g} a second" if user_qps > 0 else "as fast as the store answers"
    print(f"== {backend}: {count} DataVolumes, created {rate}", flush=True)
    opened = embedded(workdir) if backend == "embedded" else kubernetes(workdir)
    async with opened as clients, AsyncExitStack() as stack:
        await prepare(clients.sim)
        limit = ["--qps", str(qps), "--burst", str(burst)] if backend == "kubernetes" else []
        controllers = ControllerProcess(workdir, [*clients.controller_args, *limit], profile=profile)
        stack.callback(controllers.kill)
        await controllers.ready()
        tracker = Tracker(count)
        sim = Manager(clients.sim)
        for spec in node_simulator(sim.client(), pod_seconds):
            sim.add(spec)
        sim.reader(CDI_API_VERSION, "DataVolume", NAMESPACE).add_handler(tracker)
        stop_sim = asyncio.Event()
        sim_task = asyncio.create_task(sim.run(stop_sim))
        stack.push_async_callback(lambda: sim_task)
        stack.callback(stop_sim.set)
        await ready_for_users(clients.sim)
        await controllers.baseline()
        server_metrics = clients.server_metrics
        metrics_before = await asyncio.to_thread(server_metrics) if server_metrics else None
        started = time.monotonic()
        progress = asyncio.create_task(_report_progress(tracker, started))
        await create_all(clients.user, count, tracker, user_qps)
        created = time.monotonic() - started
        print(f"   created {count} in {created:.1f} s", flush=True)
        try:
            await asyncio.wait_for(tracker.all_done.wait(), timeout)
        finally:
            progress.cancel()
        finished = time.monotonic() - started
        server = None
        if server_metrics and metrics_before is not None:
            server = [asdict(row) for row in
                      scale_apiserver.rows(metrics_before, await asyncio.to_thread(server_metrics))]
        report = await controllers.stop()
    latencies = sorted(tracker.succeeded[n] - tracker.created[n] for n in tracker.succeeded)
    return {"backend": backend, "count": count, "create_seconds": created, "all_succeeded_seconds": finished,
            "latency_p50": latencies[len(latencies) // 2], "latency_max": latencies[-1], "controller": report,
            **({"apiserver_writes": server} if server is not None else {})}


async def _report_progress(tracker: Tracker, started: float) -> None:
    while True:
        await asyncio.sleep(10)
        print(f"   {time.monotonic() - started:6.0f} s: created {len(tracker.created)}; {tracker.progress()}",
              flush=True)


def context(count: int, qps: str, user_qps: float, pod_seconds: float) -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "count": count, "machine": platform.node(),
            "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "controller_qps": qps,
            "user_creates": f"{user_qps:g} qps, burst {USER_BURST}" if user_qps > 0 else "no limit (a burst)",
            "node": "simulated (kwok-style): PVs and pod phases written by the benchmark",
            "importer_pod_runs_seconds": pod_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="DataVolumes per backend (default 1000)")
    parser.add_argument("--backends", default="embedded,kubernetes", help="comma-separated: embedded,kubernetes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for all Succeeded")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, store) afterwards")
    parser.add_argument("--qps", type=float, default=DEFAULT_QPS,
                        help="the controllers' client-side rate limit on Kubernetes (default: none, cdi controller's)")
    parser.add_argument("--burst", type=int, default=30, help="its burst, with --qps")
    parser.add_argument("--pod-seconds", type=float, default=POD_SECONDS,
                        help=f"how long each simulated importer pod runs (default {POD_SECONDS:g}; 0: its phases "
                             "come ~10 ms apart and may reach the controllers as one change)")
    parser.add_argument("--user-qps", type=float, default=USER_QPS,
                        help=f"the user's creates per second, on both backends (default {USER_QPS:g}, a client's "
                             "default limit; 0: no limit, a burst the controllers work through afterwards)")
    parser.add_argument("--profile", action="store_true",
                        help="run the controllers under cProfile (controller.prof in the kept work directory; "
                             "slows them: not for the reported numbers)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    results = []
    for backend in backends:
        workdir = Path(tempfile.mkdtemp(prefix=f"pycdi-scale-{backend}-"))
        try:
            results.append(asyncio.run(measure(backend, args.count, workdir, args.timeout, args.profile,
                                               args.qps, args.burst, args.user_qps, args.pod_seconds)))
        finally:
            if args.keep or args.profile:
                print(f"   work directory kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print(scale_report.table(results))
    partial = args.count != 1000 or set(backends) != {"embedded", "kubernetes"}
    limit = f"{args.qps:g} qps, burst {args.burst}" if args.qps > 0 else "no client-side limit"
    about = context(args.count, limit, args.user_qps, args.pod_seconds)
    path = scale_report.write(ROOT / "bench" / "results", results, about, partial=partial, burst=args.user_qps <= 0)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
