"""`cdi serve`: the embedded control plane in the foreground. It takes the single-active-process lock
(a second `cdi serve` on the same home waits as a hot standby), prepares the node — storage pool,
default StorageClasses, re-attached volumes, the CDIConfig singleton — and then runs every controller:
the local volume provisioner and pod runner (the parts Kubernetes would provide) and CDI's own
StorageProfile, CDIConfig, DataVolume import/upload and PVC import/upload controllers, plus the upload
proxy on 127.0.0.1. The store answers UploadTokenRequests in the create response, signed with the
token key ring this process copies next to the store (`cdi.cli.tokenkeys`). The store adds a clone token
to a DataVolume created to clone from another namespace, signed with the clone key next to the store
(`cdi.embedded.clonetokens`, created here at start if missing), which the controllers check. SIGINT/SIGTERM stop it
gracefully; worker pods keep running (their shim or podman's conmon holds them) and the next
`cdi serve` on the same home re-attaches to them, so a restart or an upgrade interrupts no import or
upload (`--stop-pods-on-exit` stops them instead). With `--metrics-port`
(off by default; 0 picks a free port, logged) the control plane's Prometheus metrics are served on
127.0.0.1 at `/metrics` (`cdi.monitoring`). `--pod-runtime` chooses how worker pods run (`cdi.cli.podruntime`):
`auto` (the default) as podman containers of the image built from this code where it is built, else as
processes; `container` insists on containers; `process` never uses them."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cdi.cli import podruntime
from cdi.cli.daemon import run_until_stopped
from cdi.cli.flags import parse_duration
from cdi.cli.proxyhost import EmbeddedUploadProxy
from cdi.cli.state import LOCK_FILE, clone_key_path, store_path, token_keys_path
from cdi.cli.tokenkeys import TokenKeyFile
from cdi.controllers import cdiconfig
from cdi.controllers.progress import HttpsProgressScraper
from cdi.controllers.progresswatch import DEFAULT_STALL_TIMEOUT
from cdi.controllers.setup import ControllerOptions, cdi_controllers, observe_cluster
from cdi.embedded import EmbeddedCluster
from cdi.embedded.clonetokens import SigningKeyFile, clone_token_mutation
from cdi.embedded.nodeagent import add_node_agent
from cdi.embedded.uploadtokens import KeyRingFile, upload_token_reviews
from cdi.monitoring import ControlPlaneMetrics, MetricsServer
from cdi.runtime.lock import ProcessLock
from cdi.runtime.manager import Manager
from cdi.runtime.types import Clock, SystemClock

log = logging.getLogger("cdi.serve")


@dataclass(frozen=True)
class ServeOptions:
    pod_backoff_base: float = 10.0
    pod_backoff_cap: float = 300.0
    image: str = "pycdi/pycdi:latest"
    uploadproxy_port: int = 31443
    metrics_port: int | None = None  # None: no metrics endpoint; 0: a free port
    pod_runtime: str = "process"  # "process", "container" or "auto"
    pod_image: str | None = None  # the container runtime's image; None: this checkout's (`cdi.cli.podruntime`)
    stall_timeout: float = DEFAULT_STALL_TIMEOUT.total_seconds()  # `progresswatch`: seconds without progress
    stop_pods_on_exit: bool = False  # stop the worker pods' containers too, instead of leaving them to the next run


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("serve", help="run the embedded control plane in the foreground")
    parser.add_argument("--pod-backoff", type=float, default=10.0,
                        help="first crash-loop back-off of a failing pod, in seconds (kubelet: 10)")
    parser.add_argument("--uploadproxy-port", type=int, default=31443,
                        help="port of the upload proxy on 127.0.0.1 (0 picks a free one; default 31443)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics at 127.0.0.1:PORT/metrics (0 picks a free one; default off)")
    parser.add_argument("--stall-timeout", type=parse_duration, default=DEFAULT_STALL_TIMEOUT.total_seconds(),
                        help="a transfer moving no bytes this long gets a Stalled condition (default 10m; 0: never)")
    podruntime.add_options(parser)
    parser.set_defaults(run=lambda args, home: asyncio.run(serve_forever(
        home, ServeOptions(pod_backoff_base=args.pod_backoff, uploadproxy_port=args.uploadproxy_port,
                           metrics_port=args.metrics_port, pod_runtime=args.pod_runtime,
                           pod_image=args.pod_image, stall_timeout=args.stall_timeout,
                           stop_pods_on_exit=args.stop_pods_on_exit))))


async def serve_forever(home: Path, options: ServeOptions) -> int:
    return await run_until_stopped(lambda stop: serve(home, stop, options))


async def serve(home: Path, stop: asyncio.Event, options: ServeOptions, clock: Clock | None = None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    clock = clock or SystemClock()
    lock = ProcessLock(home / LOCK_FILE)
    if not await lock.acquire(stop):
        return
    try:
        keys = KeyRingFile(token_keys_path(home))
        reviews = upload_token_reviews(keys.read, lambda: clock.now().timestamp())
        clone_key = SigningKeyFile(clone_key_path(home), lambda: clock.now().timestamp())
        mutation = clone_token_mutation(clone_key, lambda: clock.now().timestamp())
        async with EmbeddedCluster(store_path(home), clock=clock.now, reviews=reviews, mutation=mutation) as cluster:
            await _run(home, cluster, stop, options, clock, keys, clone_key)
    finally:
        lock.release()


async def _run(home: Path, cluster: EmbeddedCluster, stop: asyncio.Event, options: ServeOptions, clock: Clock,
               keys: KeyRingFile, clone_key: SigningKeyFile) -> None:
    token_keys = TokenKeyFile(cluster, keys, clock)
    await token_keys.start()
    await asyncio.to_thread(clone_key.ring)  # made now, not on the first clone
    metrics = ControlPlaneMetrics() if options.metrics_port is not None else None
    manager = Manager(cluster, clock=clock, metrics=metrics.runtime if metrics is not None else None,
                      freeze_heap=True)
    launcher = await podruntime.launcher_for(options.pod_runtime, options.pod_image)
    runner = await add_node_agent(manager, cluster, home, clock, backoff_base=options.pod_backoff_base,
                                  backoff_cap=options.pod_backoff_cap, launcher=launcher)
    await cdiconfig.ensure_config(cluster)
    proxy = EmbeddedUploadProxy(cluster, home, clock, port=options.uploadproxy_port)
    await proxy.start()
    metrics_server = MetricsServer(metrics.registry, port=options.metrics_port or 0) if metrics is not None else None
    if metrics_server is not None:
        await metrics_server.start()
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_server.port)
    # CDI's controllers read through the manager's informer caches; the node agent above keeps reading
    # the store directly, as kubelet and the CSI provisioner would read their own state.
    for spec in cdi_controllers(manager.client(), clock, HttpsProgressScraper(),
                                ControllerOptions(options.image, proxy.url, proxy.ca_pem,
                                                  clone_tokens=clone_key.clone_tokens(), metrics=metrics,
                                                  embedded_operator=True,
                                                  stall_timeout=timedelta(seconds=options.stall_timeout)),
                                manager.events()):
        manager.add(spec)
    if metrics is not None:
        await observe_cluster(metrics, cluster, manager.reader, workers=True, single_node=True)
    log.info("embedded control plane serving %s", home)
    try:
        await manager.run(stop)
    finally:
        await podruntime.stop_pods(runner, options.stop_pods_on_exit, home)
        await proxy.stop()
        if metrics_server is not None:
            await metrics_server.stop()
        await token_keys.stop()
