"""`cdi node --kubeconfig FILE`: this machine as a node of a Kubernetes cluster that has no kubelet.

It runs the node agent (`cdi.embedded.nodeagent`) against the real API server: it registers the Node,
binds unscheduled pods to it and runs them as local processes (with their volumes and secrets), and
provisions local volumes for claims of its StorageClasses — the same code `cdi serve` runs on the
embedded store. Its state (pod directories and logs, the storage pool) lives under the home directory
(`--home`/`CDI_HOME`), which one `cdi node` holds at a time. With `cdi controller` against the same
API server, a DataVolume imports end to end on a real cluster. SIGINT/SIGTERM stop it gracefully.

It also serves the one kubelet API path the API server needs for `kubectl logs`
(`cdi.embedded.kubeletapi`) on `--kubelet-address:--kubelet-port` (default 127.0.0.1:10250; 0 picks a free
port) and records the port in the Node's status. Callers must present a client certificate signed by
`--client-ca-file`, or by default by the cluster's client CA (the `client-ca-file` of
`kube-system/extension-apiserver-authentication`); with neither, the API is not served and the log says so.
It keeps the node's heartbeat as kubelet does (`cdi.embedded.nodeheartbeat`): the Lease named after the
node in `kube-node-lease`, renewed every quarter of `--node-lease-duration-seconds` (40: every 10 s), and
the Node's conditions, written when one changes or every `--node-status-report-frequency` (5m). On
shutdown it stops renewing and leaves the Lease to expire, as kubelet does.
`--pod-runtime`/`--pod-image` choose podman containers of the image of this code where it is built and
processes otherwise (`auto`, the default, as under `cdi serve`), or insist on either (`cdi.cli.podruntime`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from cdi.cli import podruntime
from cdi.cli.daemon import run_until_stopped
from cdi.cli.flags import parse_duration
from cdi.cluster.errors import ApiError
from cdi.cluster.protocol import Cluster
from cdi.embedded.kubeletapi import KubeletApi
from cdi.embedded.nodeagent import add_node_agent
from cdi.embedded.nodeheartbeat import HeartbeatSettings
from cdi.embedded.pods.node import HOST_IP, NODE_NAME
from cdi.kube import connect
from cdi.runtime.manager import Manager
from cdi.runtime.types import SystemClock

log = logging.getLogger("cdi.node")
NODE_LOCK = "node.lock"
KUBELET_CERT_DIR = "kubelet-api"
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


@dataclass(frozen=True)
class KubeletOptions:
    address: str = HOST_IP
    port: int = 10250
    client_ca_file: Path | None = None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("node", help="run this machine as a node of a Kubernetes cluster without kubelet")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--pod-backoff", type=float, default=10.0,
                        help="first crash-loop back-off of a failing pod, in seconds (kubelet: 10)")
    parser.add_argument("--kubelet-address", default=HOST_IP,
                        help="address of the kubelet API (container logs for the API server; default 127.0.0.1)")
    parser.add_argument("--kubelet-port", type=int, default=10250,
                        help="port of the kubelet API (0 picks a free one; default 10250)")
    parser.add_argument("--client-ca-file", type=Path, default=None,
                        help="CA that signs the API server's kubelet client certificate (default: the cluster's "
                             "client CA from kube-system/extension-apiserver-authentication)")
    parser.add_argument("--node-lease-duration-seconds", type=_positive_seconds,
                        default=HeartbeatSettings.node_lease_duration_seconds, metavar="SECONDS",
                        help="the node Lease's duration; it is renewed every quarter of it (kubelet: 40)")
    parser.add_argument("--node-status-report-frequency", type=_report_frequency,
                        default=HeartbeatSettings.node_status_report_frequency, metavar="DURATION",
                        help="how often the Node's conditions are reported when none changes (kubelet: 5m)")
    podruntime.add_options(parser)
    parser.set_defaults(run=lambda args, home: asyncio.run(run(
        args.kubeconfig, home, args.pod_backoff,
        KubeletOptions(args.kubelet_address, args.kubelet_port, args.client_ca_file),
        PodRuntime(args.pod_runtime, args.pod_image, args.stop_pods_on_exit),
        HeartbeatSettings(args.node_lease_duration_seconds, args.node_status_report_frequency))))


def _report_frequency(text: str) -> float:
    # lastHeartbeatTime has whole seconds: a shorter period would rewrite the Node as fast as the API allows.
    seconds = parse_duration(text)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"invalid report frequency {text!r}: it must be at least 1s")
    return seconds


def _positive_seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}: use a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}: it must be positive")
    return value


@dataclass(frozen=True)
class PodRuntime:
    runtime: str = "process"
    image: str | None = None
    stop_on_exit: bool = False  # stop the pods' containers on the way out (default: the next run picks them up)


async def run(kubeconfig: Path | None, home: Path, pod_backoff: float, kubelet: KubeletOptions,
              pods: PodRuntime, heartbeat: HeartbeatSettings) -> int:
    return await run_until_stopped(lambda stop: serve_node(kubeconfig, home, stop, pod_backoff=pod_backoff,
                                                           kubelet=kubelet, pods=pods, heartbeat=heartbeat))


async def serve_node(kubeconfig: Path | None, home: Path, stop: asyncio.Event, *, pod_backoff: float = 10.0,
                     kubelet: KubeletOptions | None = None, pods: PodRuntime | None = None,
                     heartbeat: HeartbeatSettings | None = None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    kubelet = kubelet or KubeletOptions()
    pods = pods or PodRuntime()
    launcher = await podruntime.launcher_for(pods.runtime, pods.image)
    async with await connect(kubeconfig) as cluster:
        manager = Manager(cluster, clock=clock, lock_path=home / NODE_LOCK)
        api, port = await _start_kubelet_api(cluster, home, kubelet)
        try:
            runner = await add_node_agent(manager, cluster, home, clock, backoff_base=pod_backoff, kubelet_port=port,
                                          launcher=launcher, heartbeat=heartbeat)
            log.info("node agent for %s serving %s", cluster.transport.server, home)
            try:
                await manager.run(stop)
            finally:
                await podruntime.stop_pods(runner, pods.stop_on_exit, home)
        finally:
            if api is not None:
                await api.close()


async def _start_kubelet_api(cluster: Cluster, home: Path, options: KubeletOptions) -> tuple[KubeletApi | None, int]:
    ca = options.client_ca_file.read_bytes() if options.client_ca_file else await _cluster_client_ca(cluster)
    if not ca:
        log.warning("no client CA (--client-ca-file, or client-ca-file in %s/%s): the kubelet API is not served, "
                    "so `kubectl logs` cannot reach this node's pods", *AUTH_CONFIGMAP)
        return None, 0
    api = KubeletApi(cluster, home, NODE_NAME, ca)
    port = await api.start(options.address, options.port, home / KUBELET_CERT_DIR)
    log.info("kubelet API (container logs) on https://%s:%d", options.address, port)
    return api, port


async def _cluster_client_ca(cluster: Cluster) -> bytes:
    namespace, name = AUTH_CONFIGMAP
    try:
        config = await cluster.get("v1", "ConfigMap", name, namespace)
    except ApiError as e:
        log.warning("could not read %s/%s for the cluster's client CA: %s", namespace, name, e)
        return b""
    return str((config.get("data") or {}).get("client-ca-file") or "").encode()
