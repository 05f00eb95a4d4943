"""The controller process of the scale benchmark: CDI's controller set alone, measuring itself.

    python -m bench.scale_controller --backend embedded --store PATH --report FILE
    python -m bench.scale_controller --backend kubernetes --kubeconfig FILE --report FILE [--qps 20 --burst 30]

It runs exactly what `cdi controller` runs (`cdi.controllers.setup.cdi_controllers` on a `Manager`,
reconcilers reading through the manager's informer caches) but nothing else, so that its peak RSS is
the controllers' own: no leader election (one replica; the Lease renewals would be a per-second cost,
not a per-DataVolume one), no health server, and a progress scraper that answers at once (the node side
is simulated by `bench.scale`: no importer runs, so there is no metrics endpoint to scrape). Every API
request its client sends is counted (`bench.scale_metrics`) and every reconcile timed.

Signals: once the controllers run it writes `FILE.ready`; SIGUSR1 snapshots the request counts as the
baseline (what start-up cost; reconcile times, stalls and collections are measured afresh from there) and
answers with `FILE.baseline`; SIGTERM stops it gracefully, and the report (counts, baseline, reconcile
times per controller after the baseline and at start-up, peak RSS) is written to FILE as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import resource
import signal
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.scale_metrics import CountingCluster, CountingTransport, ReconcileStats, timed
from cdi.cluster.protocol import Cluster
from cdi.controllers.setup import ControllerOptions, cdi_controllers
from cdi.embedded import EmbeddedCluster
from cdi.kube import KubeCluster
from cdi.kube.config import load_configuration
from cdi.kube.transport import DEFAULT_BURST, DEFAULT_QPS
from cdi.runtime.manager import Manager
from cdi.runtime.types import SystemClock

IMAGE = "pycdi/pycdi:latest"


class NoMetrics:
    """The simulated importer pods serve no progress metric: answer "unknown" without a network call."""

    async def scrape(self, pod_ip: str, owner_uid: str) -> float | None:
        return None


def _counts(cluster: CountingCluster, transport: CountingTransport | None) -> dict[str, Any]:
    calls = {f"{verb} {kind}": n for (verb, kind), n in sorted(cluster.calls.items())}
    watches = sum(n for (verb, _), n in cluster.calls.items() if verb == "watch")
    if transport is not None:  # the HTTP requests really sent (a watch the server ended is reopened)
        return {"requests": sum(transport.by_method.values()), "watches": transport.watches,
                "by_method": dict(transport.by_method), "calls": calls}
    return {"requests": sum(cluster.calls.values()) - watches, "watches": watches, "calls": calls}


def peak_rss_bytes() -> int:
    """VmHWM of this process (ru_maxrss is the same figure, in KiB on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _open(args: argparse.Namespace, stack: AsyncExitStack) -> tuple[Cluster, CountingTransport | None]:
    if args.backend == "embedded":
        return await stack.enter_async_context(EmbeddedCluster(args.store)), None
    transport = CountingTransport(await load_configuration(args.kubeconfig), qps=args.qps, burst=args.burst)
    return await stack.enter_async_context(KubeCluster(transport)), transport


async def run(args: argparse.Namespace) -> None:
    report: Path = args.report
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        raw, transport = await _open(args, stack)
        cluster = CountingCluster(raw)
        baseline: dict[str, Any] = {}
        stats: dict[str, ReconcileStats] = {}
        startup: dict[str, Any] = {}  # the reconciles before the baseline: reported, not judged

        gc_pauses, lag = GcPauses(), LoopLag()

        def snapshot() -> None:
            baseline.update(_counts(cluster, transport))
            # Requests, reconciles, stalls and collections are counted from here: start-up (making the
            # certificates and token keys of an empty store, syncing the caches) is reported apart.
            startup.update({name: s.restart() for name, s in stats.items()})
            gc_pauses.reset()
            lag.reset()
            report.with_suffix(".baseline").write_text(json.dumps(baseline))

        loop.add_signal_handler(signal.SIGUSR1, snapshot)
        clock = SystemClock()
        manager = Manager(cluster, clock=clock, freeze_heap=True)  # as cdi controller and cdi serve
        for spec in cdi_controllers(manager.client(), clock, NoMetrics(), ControllerOptions(IMAGE),
                                    manager.events()):
            stats[spec.name] = ReconcileStats()
            manager.add(timed(spec, stats[spec.name]))
        gc.callbacks.append(gc_pauses)
        lagging = asyncio.create_task(lag.run())
        running = asyncio.create_task(manager.run(stop))
        # The manager has no "started" hook to await; `active` turns True once every informer has synced.
        while not manager.active and not running.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        report.with_suffix(".ready").write_text("ready\n")
        await running
        lagging.cancel()
        final = _counts(cluster, transport)
    report.write_text(json.dumps({
        "backend": args.backend, "final": final, "baseline": baseline or {"requests": 0, "watches": 0, "calls": {}},
        "per_kind_after_baseline": _difference(final["calls"], baseline.get("calls", {})),
        "reconciles": {name: s.summary() for name, s in stats.items()}, "reconciles_at_startup": startup,
        "peak_rss_bytes": peak_rss_bytes(), "cpu_seconds": _cpu_seconds(),
        "gc": gc_pauses.summary(), "loop_lag_max_ms": round(lag.worst * 1000, 1), "loop_lag_over_50ms": lag.over_50ms,
    }, indent=2))


class GcPauses:
    """The interpreter's cyclic garbage collections, per generation: how many, their total and longest time.
    A collection stops the event loop (and every reconcile waiting on it) for as long as it runs."""

    def __init__(self) -> None:
        self._started = 0.0
        self.by_generation: dict[int, list[float]] = {}
        self.reset()

    def reset(self) -> None:
        self.by_generation = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        entry = self.by_generation[info["generation"]]
        entry[0] += 1
        entry[1] += spent
        entry[2] = max(entry[2], spent)

    def summary(self) -> dict[str, dict[str, float]]:
        return {str(g): {"count": n, "total_s": round(total, 3), "max_ms": round(longest * 1000, 1)}
                for g, (n, total, longest) in self.by_generation.items()}


class LoopLag:
    """How late a callback asked for every 10 ms runs: the event loop's stalls, whatever their cause."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.over_50ms = 0

    def reset(self) -> None:
        self.worst, self.over_50ms = 0.0, 0

    async def run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            late = time.perf_counter() - asked - 0.01
            self.worst = max(self.worst, late)
            self.over_50ms += late > 0.05


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _difference(final: dict[str, int], baseline: dict[str, int]) -> dict[str, int]:
    diff = Counter(final)
    diff.subtract(baseline)
    return {k: v for k, v in sorted(diff.items()) if v}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_controller")
    parser.add_argument("--backend", choices=("embedded", "kubernetes"), required=True)
    parser.add_argument("--store", type=Path, help="the embedded store's SQLite file")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig of the API server")
    parser.add_argument("--report", type=Path, required=True, help="where the JSON report goes at SIGTERM")
    parser.add_argument("--qps", type=float, default=DEFAULT_QPS, help="client-side rate limit (cdi controller's)")
    parser.add_argument("--burst", type=int, default=DEFAULT_BURST)
    args = parser.parse_args()
    if (args.backend == "embedded") != (args.store is not None):
        parser.error("--store goes with --backend embedded, --kubeconfig with --backend kubernetes")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
