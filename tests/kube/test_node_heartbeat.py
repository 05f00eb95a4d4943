"""`cdi node`'s heartbeat on a real API server, as kubelet's: the Lease `kube-node-lease/<node>` exists,
is held by the node, owned by its Node, and renewed (renewTime moves); the Node's conditions carry
kubelet's four with moving heartbeats; after the agent stops the Lease stays and is no longer renewed.

The agent runs with an 8-second Lease (renewed every 2 s) and a 2-second status report frequency, so the
test sees several heartbeats in seconds; kubelet's defaults (40 s, 5 min) are checked by the pure tables
of `tests/pods/test_node_heartbeat.py` and by the embedded control plane's Lease
(`tests/e2e/test_node_heartbeat.py`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Object
from cdi.embedded.pods.node import NODE_NAME
from cdi.kube import connect
from tests.support.controlplane import release_storage
from tests.support.kubecluster import KubeCluster

pytestmark = pytest.mark.slow
LEASE = ("coordination.k8s.io/v1", "Lease", NODE_NAME, "kube-node-lease")


def _when(text: Any) -> datetime:
    return datetime.fromisoformat(str(text)).astimezone(UTC)


async def _eventually(check: Callable[[], Awaitable[Object | None]], what: str, log: Path,
                      timeout: float = 30.0) -> Object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := await check()) is not None:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s\n{log.read_text(errors='replace')[-3000:]}")


def _start_node(kubeconfig: Path, home: Path) -> subprocess.Popen[bytes]:
    with (home / "node.log").open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("cdi")), "node", "--kubeconfig", str(kubeconfig),
             "--kubelet-port", "0", "--pod-runtime", "process", "--node-lease-duration-seconds", "8",
             "--node-status-report-frequency", "2s"],
            env={**os.environ, "CDI_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _ready(node: Object) -> Object:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


async def test_the_node_lease_is_kubelets_and_renewed(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    home = tmp_path / "node"
    home.mkdir()
    log = home / "node.log"
    started = datetime.now(UTC).replace(microsecond=0)
    process = _start_node(kube_cluster.kubeconfig_path, home)
    try:
        async with await connect(kube_cluster.kubeconfig_path) as cluster:
            async def lease_since(moment: datetime) -> Object | None:
                try:
                    lease = await cluster.get(*LEASE)
                except NotFound:
                    return None
                return lease if _when(lease["spec"]["renewTime"]) > moment else None

            first = await _eventually(lambda: lease_since(started), "the agent's Lease", log)
            node = await cluster.get("v1", "Node", NODE_NAME)
            assert first["spec"]["holderIdentity"] == NODE_NAME
            assert first["spec"]["leaseDurationSeconds"] == 8
            assert first["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME, "uid": node["metadata"]["uid"]}]
            assert {c["type"] for c in node["status"]["conditions"]} >= {
                "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"}
            assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"

            renewed = await _eventually(lambda: lease_since(_when(first["spec"]["renewTime"])),
                                        "a renewal of the Lease", log, timeout=10)
            assert _when(renewed["spec"]["renewTime"]) > _when(first["spec"]["renewTime"])
            beat = _when(_ready(node)["lastHeartbeatTime"])

            async def beaten() -> Object | None:
                later = await cluster.get("v1", "Node", NODE_NAME)
                return later if _when(_ready(later)["lastHeartbeatTime"]) > beat else None

            later = await _eventually(beaten, "a new heartbeat in the Node's conditions", log, timeout=10)
            assert _ready(later)["lastTransitionTime"] == _ready(node)["lastTransitionTime"]

            _stop(process)
            assert "Traceback" not in log.read_text(errors="replace")
            last = await cluster.get(*LEASE)  # kubelet leaves its Lease to expire; it does not delete it
            await asyncio.sleep(5)  # two and a half renew intervals
            assert (await cluster.get(*LEASE))["spec"]["renewTime"] == last["spec"]["renewTime"]
    finally:
        _stop(process)
        release_storage(home)
