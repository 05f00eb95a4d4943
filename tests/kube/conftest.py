"""Fixtures for the suites that run against a real Kubernetes API server (`tests/support/kubecluster.py`).

`kube_cluster` (session) is one etcd + kube-apiserver + kube-controller-manager for the whole run;
`kube_namespace` (function) is a fresh namespace deleted afterwards; `kube_api` (function) is an admin
`kubernetes_asyncio` ApiClient. The binaries come from $PYCDI_KUBE_BIN (scripts/test.sh exports it) or
are built by scripts/kube-binaries.sh; that build runs during collection, before any test's timeout
starts, because a cold one takes 10-16 minutes. Only a missing Go toolchain makes these tests skip.
"""

from __future__ import annotations

import re
import urllib.error
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, kube_binaries

_BINARIES = pytest.StashKey[Path | Exception]()


def _resolve_binaries() -> Path | Exception:
    try:
        return kube_binaries()
    except (KubeBinariesUnavailable, RuntimeError, OSError) as error:
        return error


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.collectonly or _BINARIES in config.stash:
        return
    if any("kube_cluster" in getattr(item, "fixturenames", ()) for item in items):
        config.stash[_BINARIES] = _resolve_binaries()


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A running control plane; admin kubeconfig at `.kubeconfig_path`, others from `.kubeconfig_for()`."""
    stash = request.config.stash
    binaries = stash[_BINARIES] if _BINARIES in stash else _resolve_binaries()
    if isinstance(binaries, KubeBinariesUnavailable):
        pytest.skip(str(binaries))
    if isinstance(binaries, Exception):
        raise binaries
    cluster = KubeCluster(binaries, tmp_path_factory.mktemp("kube"))
    with cluster:
        yield cluster


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace made for this test; deleted afterwards (the namespace controller empties it)."""
    name = _namespace_name(request.node.name)
    kube_cluster.request("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pycdi.kubevirt.io/test": "true"}}})
    yield name
    try:
        kube_cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    except urllib.error.HTTPError as error:
        error.close()
        if error.code != 404:
            raise


@pytest.fixture
async def kube_api(kube_cluster: KubeCluster) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio client authenticated as the cluster admin (system:masters)."""
    api = await new_client_from_config(config_file=str(kube_cluster.kubeconfig_path), persist_config=False)
    async with api:
        yield api
