"""Both `Cluster` backends for the suites that must pass on each: the embedded store and a real API server.

`cluster_backend` (parametrized: "embedded", "kubernetes") yields a `Backend`: the `Cluster` to test, a
namespace made for the test, and `eventually` for what a real cluster does asynchronously (garbage
collection by kube-controller-manager). The Kubernetes side uses one `KubeCluster`
(`tests/support/kubecluster.py`) for the whole session, through `kube_control_plane`; the tests reach it
only through `cdi.kube.KubeCluster`, our backend. Loaded as a pytest plugin by `tests/conftest.py`.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdi.api.crdgen import all_crds
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.embedded import EmbeddedCluster
from cdi.kube import connect
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, kube_binaries

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class Backend:
    name: str
    cluster: Cluster
    namespace: str

    async def eventually(self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
        """Wait until `check()` holds (at once on the embedded store; a real cluster may take a moment)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            await self.cluster.get(api_version, kind, name, namespace)
        except NotFound:
            return False
        return True


@pytest.fixture(scope="session")
def kube_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """One etcd + kube-apiserver + kube-controller-manager for the session (built on first use)."""
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as e:
        pytest.skip(str(e))
    with KubeCluster(binaries, tmp_path_factory.mktemp("kube")) as control_plane:
        install_crds(control_plane)
        yield control_plane


def install_crds(control_plane: KubeCluster, timeout: float = 60.0) -> None:
    """Create every CRD `cdi.api.crdgen` generates (once) and wait until each is Established."""
    crds = all_crds()
    for crd in crds:
        try:
            control_plane.request("POST", CRD_PATH, crd)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code != 409:
                raise
    deadline = time.monotonic() + timeout
    for crd in crds:
        while True:
            found = control_plane.request("GET", f"{CRD_PATH}/{crd['metadata']['name']}")
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {crd['metadata']['name']} not Established after {timeout} s")
            time.sleep(0.2)


def _namespace_for(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["embedded", "kubernetes"])
async def cluster_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    namespace = _namespace_for(request.node.name)
    if request.param == "embedded":
        async with EmbeddedCluster(tmp_path / "store.db", poll_interval=0.02) as store:
            await store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            yield Backend("embedded", store, namespace)
        return
    control_plane: KubeCluster = request.getfixturevalue("kube_control_plane")
    async with await connect(control_plane.kubeconfig_path) as cluster:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            yield Backend("kubernetes", cluster, namespace)
        finally:
            try:
                await cluster.delete("v1", "Namespace", namespace)
            except NotFound:
                pass
