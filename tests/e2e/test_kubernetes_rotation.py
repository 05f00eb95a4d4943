"""`cdi controller` on a real API server renews the upload path's Secrets on certConfig's schedule.

The controller runs as an install's would (service account `cdi-sa`, the install's RBAC: a missing rule
would be a 403 in its log, checked at the end). With the CDI resource's certConfig cut to seconds and token
keys rotating every 4 s, it creates the upload-server CA, then stages and promotes a new one (the bundle
holding both meanwhile), re-issues the proxy's client certificate under it, and rotates the token keys,
keeping the previous public key for verification."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cdi.contracts import deployment as dep
from cdi.controllers.upload.credentials import (
    BUNDLE_CONFIG_MAP,
    BUNDLE_KEY,
    CA_SECRET,
    CLIENT_SECRET,
    TOKEN_KEYS_SECRET,
    RingSecret,
)
from cdi.pki import signed_by, split_bundle
from tests.support.backends import install_crds
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, kube_binaries
from tests.support.kubenode import KubeDeployment

pytestmark = pytest.mark.slow
T = TypeVar("T")


def secret(cluster: KubeCluster, name: str) -> dict[str, bytes] | None:
    try:
        found = cluster.request("GET", f"/api/v1/namespaces/{dep.NAMESPACE}/secrets/{name}")
    except Exception:
        return None
    return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}


def wait(what: str, probe: Callable[[], T | None], deployment: KubeDeployment, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{deployment.logs()}")


def test_cdi_controller_rotates_the_upload_ca_client_certificate_and_token_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as error:
        pytest.skip(str(error))
    monkeypatch.setenv("CDI_CREDENTIAL_REFRESH_INTERVAL", "0.5")
    monkeypatch.setenv("CDI_TOKEN_KEY_ROTATION_INTERVAL", "4")
    (tmp_path / "kube").mkdir()
    with KubeCluster(binaries, tmp_path / "kube") as cluster:
        install_crds(cluster)
        cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": dep.NAMESPACE}})
        # As `cdi manifests` installs it, for a cluster's upload proxy to mount.
        cluster.request("POST", f"/api/v1/namespaces/{dep.NAMESPACE}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": BUNDLE_CONFIG_MAP},
            "data": {BUNDLE_KEY: "stale"}})
        cluster.request("POST", "/apis/cdi.kubevirt.io/v1beta1/cdis", {
            "apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": {"name": "cdi"},
            "spec": {"certConfig": {"ca": {"duration": "20s", "renewBefore": "10s"},
                                    "client": {"duration": "10s", "renewBefore": "5s"}}}})
        with KubeDeployment(cluster.kubeconfig_path, tmp_path / "node", namespace=dep.NAMESPACE) as deployment:
            first: dict[str, Any] = wait("the upload-server CA", lambda: secret(cluster, CA_SECRET), deployment)
            client = wait("the client certificate", lambda: secret(cluster, CLIENT_SECRET), deployment)
            assert signed_by(client["tls.crt"], first["tls.crt"])
            ring = RingSecret.from_data(wait("the token keys", lambda: secret(cluster, TOKEN_KEYS_SECRET), deployment))

            def staged() -> dict[str, bytes] | None:
                ca = secret(cluster, CA_SECRET)
                return ca if ca and "pending.crt" in ca and ca["tls.crt"] == first["tls.crt"] else None

            during = wait("a new CA to be staged beside the signer", staged, deployment)
            assert split_bundle(during[BUNDLE_KEY]) == [during["pending.crt"], first["tls.crt"]]

            def promoted() -> dict[str, bytes] | None:
                ca = secret(cluster, CA_SECRET)
                return ca if ca and ca["tls.crt"] == during["pending.crt"] else None

            after = wait("the staged CA to sign", promoted, deployment)
            assert after.get("previous.crt", first["tls.crt"]) == first["tls.crt"]

            def moved() -> dict[str, bytes] | None:
                found = secret(cluster, CLIENT_SECRET)
                return found if found and signed_by(found["tls.crt"], after["tls.crt"]) else None

            def mounted() -> bytes | None:
                found = cluster.request("GET", f"/api/v1/namespaces/{dep.NAMESPACE}/configmaps/{BUNDLE_CONFIG_MAP}")
                bundle = str((found.get("data") or {}).get(BUNDLE_KEY, "")).encode()
                return bundle if after["tls.crt"] in split_bundle(bundle) else None

            wait("the proxy's mounted bundle to hold the new CA", mounted, deployment)
            assert after["tls.crt"] in split_bundle(wait("the client certificate under the new CA", moved,
                                                         deployment)["ca.crt"])

            def rotated() -> RingSecret | None:
                data = secret(cluster, TOKEN_KEYS_SECRET)
                now = RingSecret.from_data(data) if data else None
                return now if now and now.ring.current.kid != ring.ring.current.kid else None

            keys = wait("the token keys to rotate", rotated, deployment)
            assert ring.ring.current.public_key.public_numbers() in [k.public_numbers() for k in keys.ring.previous]
            assert not deployment.forbidden(), deployment.logs()
