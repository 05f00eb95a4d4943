"""Fixtures for the suites that run against a real Kubernetes API server (`tests/support/kubecluster.py`).

`kube_cluster` (session) is the one etcd + kube-apiserver + kube-controller-manager of the whole run
(`kube_control_plane` of `tests/support/backends.py`, with CDI's CRDs installed); `kube_namespace`
(function) is a fresh namespace deleted afterwards; `kube_api` (function) is an admin
`kubernetes_asyncio` ApiClient. How the binaries are found or built: `tests/support/backends.py`.
"""

from __future__ import annotations

import re
import urllib.error
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from tests.support.kubecluster import KubeCluster


@pytest.fixture(scope="session")
def kube_cluster(kube_control_plane: KubeCluster) -> KubeCluster:
    """The session's control plane (shared with the conformance, controller and e2e suites; CDI's CRDs are
    installed); admin kubeconfig at `.kubeconfig_path`, others from `.kubeconfig_for()`."""
    return kube_control_plane


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
