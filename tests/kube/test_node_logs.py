"""`kubectl logs` on a real API server for pods `cdi node` runs: the API server calls the kubelet API the
node agent serves (`cdi.embedded.kubeletapi`) with its kubelet client certificate; anyone else calling it
directly is refused unless the cluster's RBAC lets them get `nodes/proxy`. `cdi logs --kubeconfig` reads
the same logs through the API server, and follows them with `-f`."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdi.embedded.pods.node import NODE_NAME
from cdi.kube import connect
from tests.support.controlplane import release_storage
from tests.support.kubecluster import KubeCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def node(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "node"
    home.mkdir()
    with (home / "node.log").open("ab") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("cdi")), "node", "--kubeconfig",
                                    str(kube_cluster.kubeconfig_path), "--kubelet-port", "0", "--pod-backoff", "0.5", "--pod-runtime", "process"],
                                   env={**os.environ, "CDI_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield home
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        release_storage(home)


def _pod(name: str, namespace: str, script: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}}


async def _wait_phase(kubeconfig: Path, namespace: str, name: str, phases: tuple[str, ...], home: Path,
                      timeout: float = 60) -> None:
    async with await connect(kubeconfig) as cluster:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = await cluster.get("v1", "Pod", name, namespace)
            if (pod.get("status") or {}).get("phase") in phases:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"pod {name} not in {phases}: {pod.get('status')}\n{(home / 'node.log').read_text()[-3000:]}")


async def _kubelet_port(kubeconfig: Path, home: Path) -> int:
    """The port this test's node agent serves, once it has recorded it in the Node's status (an earlier
    test's agent may have left its own there)."""
    async with await connect(kubeconfig) as cluster:
        for _ in range(300):
            logged = re.search(r"kubelet API \(container logs\) on https://127.0.0.1:(\d+)",
                               (home / "node.log").read_text())
            node = await cluster.get("v1", "Node", NODE_NAME)
            port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
            if logged and port == int(logged.group(1)):
                return int(port)
            await asyncio.sleep(0.1)
    raise AssertionError("the node agent never recorded its kubelet port")


async def test_kubectl_logs_reaches_the_node_agent(kube_cluster: KubeCluster, kube_namespace: str,
                                                   node: Path) -> None:
    kubeconfig = kube_cluster.kubeconfig_path
    async with await connect(kubeconfig) as cluster:
        await cluster.create(_pod("done", kube_namespace, "echo one; echo two; echo three"))
        await _wait_phase(kubeconfig, kube_namespace, "done", ("Succeeded",), node)
        assert await cluster.pod_logs("done", kube_namespace) == "one\ntwo\nthree\n"
        assert await cluster.pod_logs("done", kube_namespace, tail_lines=2) == "two\nthree\n"
    assert kube_cluster.kubectl("logs", "-n", kube_namespace, "done", "--tail=1").stdout == "three\n"
    refused = kube_cluster.kubectl("logs", "-n", kube_namespace, "done", "--timestamps", check=False)
    assert refused.returncode != 0 and "timestamps are not supported" in refused.stderr


async def test_kubectl_logs_follow_streams_until_the_container_ends(kube_cluster: KubeCluster,
                                                                     kube_namespace: str, node: Path) -> None:
    kubeconfig = kube_cluster.kubeconfig_path
    async with await connect(kubeconfig) as cluster:
        await cluster.create(_pod("slow", kube_namespace, "echo first; sleep 2; echo second"))
    await _wait_phase(kubeconfig, kube_namespace, "slow", ("Running",), node)
    started = time.monotonic()
    followed = await asyncio.to_thread(kube_cluster.kubectl, "logs", "-n", kube_namespace, "slow", "-f")
    assert followed.stdout == "first\nsecond\n"
    assert time.monotonic() - started < 30


async def test_the_kubelet_api_refuses_callers_without_rights(kube_cluster: KubeCluster, kube_namespace: str,
                                                              node: Path) -> None:
    port = await _kubelet_port(kube_cluster.kubeconfig_path, node)
    url = f"https://127.0.0.1:{port}/containerLogs/{kube_namespace}/any/main"
    anonymous = _client_context()
    assert await asyncio.to_thread(_answer, url, anonymous) == (
        401, "Unauthorized: a client certificate signed by the cluster's client CA is required")
    user = yaml.safe_load(kube_cluster.kubeconfig_for("nobody").read_text())["users"][0]["user"]
    cert, key = node / "nobody.crt", node / "nobody.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    nobody = _client_context()
    nobody.load_cert_chain(cert, key)
    assert await asyncio.to_thread(_answer, url, nobody) == (
        403, "Forbidden (user=nobody, verb=get, resource=nodes, subresource=proxy)")


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the kubelet's certificate is self-signed
    return context


def _answer(url: str, context: ssl.SSLContext) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _cdi_logs(home: Path, kubeconfig: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("cdi")), "logs", "--kubeconfig", str(kubeconfig),
                           "-n", namespace, *args], env={**os.environ, "CDI_HOME": str(home / "cli-home")},
                          capture_output=True, text=True, timeout=60, check=False)


async def test_cdi_logs_reads_and_follows_through_the_api_server(kube_cluster: KubeCluster, kube_namespace: str,
                                                                 node: Path) -> None:
    kubeconfig = kube_cluster.kubeconfig_path
    async with await connect(kubeconfig) as cluster:
        await cluster.create(_pod("done", kube_namespace, "echo one; echo two; echo three"))
        await cluster.create(_pod("slow", kube_namespace, "echo first; sleep 3; echo second"))
    await _wait_phase(kubeconfig, kube_namespace, "done", ("Succeeded",), node)
    done = await asyncio.to_thread(_cdi_logs, node, kubeconfig, kube_namespace, "done")
    assert (done.returncode, done.stdout, done.stderr) == (0, "one\ntwo\nthree\n", "")
    await _wait_phase(kubeconfig, kube_namespace, "slow", ("Running",), node)
    followed = await asyncio.to_thread(_cdi_logs, node, kubeconfig, kube_namespace, "pod/slow", "-f")
    assert (followed.returncode, followed.stdout) == (0, "first\nsecond\n"), followed.stderr
    wrong = await asyncio.to_thread(_cdi_logs, node, kubeconfig, kube_namespace, "done", "-c", "nope")
    assert (wrong.returncode, wrong.stderr) == (1, "error: container nope is not valid for pod done\n")
    assert not (node / "cli-home").exists()  # nothing went near an embedded store
