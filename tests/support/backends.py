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
from cdi.cluster.protocol import Cluster, DeleteOptions
from cdi.embedded import EmbeddedCluster
from cdi.embedded.snapshots.crds import all_snapshot_crds
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


_BINARIES = pytest.StashKey[Path | Exception]()
_KUBE_FIXTURES = ("kube_control_plane", "kube_api_only", "kube_cluster", "cluster_backend", "cluster")


def _resolve_binaries() -> Path | Exception:
    try:
        return kube_binaries()
    except (KubeBinariesUnavailable, RuntimeError, OSError) as error:
        return error


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Find (or build) the binaries during collection, before any test's timeout starts: a cold build takes
    10-16 minutes. `scripts/test.sh` has built them already and says where in $PYCDI_KUBE_BIN."""
    if config.option.collectonly or _BINARIES in config.stash:
        return
    if any(set(_KUBE_FIXTURES) & set(getattr(item, "fixturenames", ())) for item in items):
        config.stash[_BINARIES] = _resolve_binaries()


def _binaries(request: pytest.FixtureRequest) -> Path:
    """The binaries, or a skip when Go is missing and nothing is built; other failures fail the test."""
    stash = request.config.stash
    found = stash[_BINARIES] if _BINARIES in stash else _resolve_binaries()
    if isinstance(found, KubeBinariesUnavailable):
        pytest.skip(str(found))
    if isinstance(found, Exception):
        raise found
    return found


@pytest.fixture(scope="session")
def kube_control_plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[KubeCluster]:
    """One etcd + kube-apiserver + kube-controller-manager for the session, with CDI's CRDs."""
    with KubeCluster(_binaries(request), tmp_path_factory.mktemp("kube")) as control_plane:
        install_crds(control_plane)
        yield control_plane


@pytest.fixture(scope="session")
def kube_api_only(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A control plane whose controller manager only collects garbage and empties namespaces: for suites
    that play the PV binder themselves (the controller suite sets claims Bound as a test step)."""
    with KubeCluster(_binaries(request), tmp_path_factory.mktemp("kube-api"),
                     controllers=("garbage-collector-controller", "namespace-controller",
                                  "serviceaccount-controller")) as control_plane:
        install_crds(control_plane)
        yield control_plane


# What a controller test may leave behind, deleted before the next one: (apiVersion, kind, namespaced).
_RESETTABLE = (("cdi.kubevirt.io/v1beta1", "DataVolume", True), ("v1", "PersistentVolumeClaim", True),
               ("v1", "Pod", True), ("v1", "Service", True), ("v1", "Secret", True), ("v1", "Event", True),
               ("cdi.kubevirt.io/v1beta1", "StorageProfile", False), ("cdi.kubevirt.io/v1beta1", "CDIConfig", False),
               ("storage.k8s.io/v1", "StorageClass", False), ("v1", "PersistentVolume", False),
               ("cdi.kubevirt.io/v1beta1", "VolumeCloneSource", True),
               ("cdi.kubevirt.io/v1beta1", "DataSource", True), ("cdi.kubevirt.io/v1beta1", "DataImportCron", True),
               ("snapshot.storage.k8s.io/v1", "VolumeSnapshot", True),
               ("snapshot.storage.k8s.io/v1", "VolumeSnapshotContent", False),
               ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass", False))


async def reset_cluster(cluster: Cluster, namespace: str = "default") -> None:
    """Delete every object of the kinds CDI's controllers touch, finalizers dropped, so a test starts empty."""
    for api_version, kind, namespaced in _RESETTABLE:
        scope = namespace if namespaced else None
        for obj in (await cluster.list(api_version, kind, scope)).items:
            name = obj["metadata"]["name"]
            try:
                if obj["metadata"].get("finalizers"):
                    await cluster.patch(api_version, kind, name, {"metadata": {"finalizers": None}}, scope)
                await cluster.delete(api_version, kind, name, scope, options=DeleteOptions(grace_period_seconds=0))
            except NotFound:
                pass


def install_crds(control_plane: KubeCluster, timeout: float = 60.0) -> None:
    """Create every CRD `cdi.api.crdgen` generates and the VolumeSnapshot CRDs (external-snapshotter's, as
    `cdi.embedded.snapshots.crds` renders them) once, and wait until each is Established."""
    crds = [*all_crds(), *all_snapshot_crds()]
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
        _wait_listable(control_plane, crd, deadline)


def _wait_listable(control_plane: KubeCluster, crd: dict[str, object], deadline: float) -> None:
    """An Established CRD may still answer 429 ("storage is (re)initializing") for a moment."""
    spec = crd["spec"]
    assert isinstance(spec, dict)
    path = f"/apis/{spec['group']}/{spec['versions'][0]['name']}/{spec['names']['plural']}"
    while True:
        try:
            control_plane.request("GET", path)
            return
        except urllib.error.HTTPError as error:
            error.close()
            if error.code != 429 or time.monotonic() > deadline:
                raise
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
