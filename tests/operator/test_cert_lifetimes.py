"""certConfig as the operator honours it: any Go duration, exactly (`cdi.operator.manifests.lifetimes`,
`cdi.install.tls.credentials`), nonsense refused with the words of upstream's HyperConverged webhook, and the
reconciler waking when a short-lived certificate falls due, with an injected clock.

The reconciler tests apply the whole install, so they run on an API server of their own (no controller
manager: nothing garbage-collects the CRDs the CR then owns, and the webhooks it registers reach no other
suite). The embedded store cannot hold the install (RBAC names such as `cdi.kubevirt.io:admin`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster
from cdi.contracts import deployment as dep
from cdi.install.objects import install_kinds
from cdi.install.tls import Lifetime, Lifetimes, credentials, next_renewal
from cdi.kube import connect
from cdi.operator.manifests import PKI_SECRET, ManifestInstaller, lifetimes
from cdi.operator.reconciler import OperatorReconciler
from cdi.pki import BACKDATE, KeyPair
from cdi.runtime.types import Key
from tests.operator.conftest import CDI_API, NAMESPACE, StepClock, clean
from tests.support.backends import install_crds
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, kube_binaries

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)
STATIC = Lifetimes()  # no certConfig: a static install's 10 years / 1 year, renewed 30 days before the end


@pytest.mark.parametrize(("cert_config", "expected"), [
    (None, Lifetimes(STATIC.ca, Lifetime(365 * D, 30 * D), Lifetime(365 * D, 30 * D))),
    # the brief's example, exactly: no rounding to whole days any more
    ({"ca": {"duration": "48h", "renewBefore": "24h"}, "server": {"duration": "1h30m", "renewBefore": "30m"}},
     Lifetimes(Lifetime(48 * H, 24 * H), Lifetime(90 * M, 30 * M), Lifetime(365 * D, 24 * H))),
    # only a duration: renewed half-way
    ({"ca": {"duration": "2h"}, "client": {"duration": "90m"}},
     Lifetimes(Lifetime(2 * H, H), Lifetime(365 * D, H), Lifetime(90 * M, 45 * M))),
    # a leaf due before its CA renews no earlier than the CA does (else reissued at every reconcile)
    ({"ca": {"duration": "48h", "renewBefore": "1h"}, "server": {"duration": "24h", "renewBefore": "12h"}},
     Lifetimes(Lifetime(48 * H, H), Lifetime(24 * H, H), Lifetime(365 * D, H))),
])
def test_cert_config_becomes_exact_lifetimes(cert_config: dict[str, Any] | None, expected: Lifetimes) -> None:
    assert lifetimes(cert_config) == (expected, [])


@pytest.mark.parametrize(("cert_config", "problem"), [
    ({"server": {"duration": "1h", "renewBefore": "1h"}},
     "spec.certConfig.server: duration is smaller than renewBefore (1h is not longer than 1h)"),
    ({"ca": {"duration": "23h", "renewBefore": "24h"}},
     "spec.certConfig.ca: duration is smaller than renewBefore (23h is not longer than 24h)"),
    ({"client": {"duration": "0s"}}, "spec.certConfig.client.duration: value is too small (0s; at least 1s)"),
    ({"server": {"duration": "1h", "renewBefore": "0.5s"}},
     "spec.certConfig.server.renewBefore: value is too small (0.5s; at least 1s)"),
    ({"ca": {"duration": "-1h"}}, "spec.certConfig.ca.duration: '-1h' is not a duration such as 48h or 1h30m"),
    ({"server": {"duration": "soon"}}, "spec.certConfig.server.duration: 'soon' is not a duration such as 48h or 1h30m"),
    ({"ca": {"duration": "48h", "renewBefore": "24h"}, "server": {"duration": "96h", "renewBefore": "12h"}},
     "spec.certConfig: ca.duration is smaller than server.duration"),
])
def test_nonsense_is_refused_with_upstreams_words_and_the_kind_keeps_its_default(
        cert_config: dict[str, Any], problem: str) -> None:
    chosen, problems = lifetimes(cert_config)
    assert problems == [problem]
    for kind in cert_config:
        if kind != "ca" or "server" not in cert_config:
            default: Lifetime = getattr(STATIC, kind)
            assert getattr(chosen, kind).duration == default.duration


def issued_for(pair: KeyPair) -> timedelta:
    return pair.certificate.not_valid_after_utc - pair.certificate.not_valid_before_utc


def test_a_short_lived_server_certificate_is_issued_exactly_and_renewed_at_renew_before() -> None:
    chosen, _ = lifetimes({"ca": {"duration": "48h", "renewBefore": "24h"},
                           "server": {"duration": "1h30m", "renewBefore": "30m"}})
    creds = credentials(NAMESPACE, NOW, None, chosen)
    # Valid from 5 minutes before issue (clock skew between peers; upstream backdates 1s) to exactly 1h30m after.
    assert creds.apiserver.expires() == NOW + 90 * M
    assert issued_for(creds.apiserver) == 90 * M + BACKDATE
    assert creds.ca.expires() == NOW + 48 * H
    assert next_renewal(creds, chosen) == NOW + H
    assert credentials(NAMESPACE, NOW + H - timedelta(seconds=1), creds.pairs(), chosen) == creds
    renewed = credentials(NAMESPACE, NOW + H, creds.pairs(), chosen)
    assert renewed.ca == creds.ca and renewed.uploadserver_client == creds.uploadserver_client
    assert renewed.apiserver != creds.apiserver and renewed.apiserver.expires() == NOW + H + 90 * M
    assert renewed.uploadproxy.expires() == NOW + H + 90 * M


def test_shortening_the_cert_config_reissues_at_once() -> None:
    long = credentials(NAMESPACE, NOW, None, STATIC)
    chosen, _ = lifetimes({"server": {"duration": "2h", "renewBefore": "30m"}})
    short = credentials(NAMESPACE, NOW + M, long.pairs(), chosen)
    assert short.ca == long.ca and short.apiserver.expires() == NOW + M + 2 * H


# --- the reconciler, with an injected clock ----------------------------------------------------------------

SHORT = {"ca": {"duration": "48h", "renewBefore": "24h"}, "server": {"duration": "1h30m", "renewBefore": "30m"}}


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as unavailable:
        pytest.skip(str(unavailable))
    with KubeCluster(binaries, tmp_path_factory.mktemp("kube-certs"), controllers=()) as cluster:
        install_crds(cluster)
        cluster.request("POST", "/api/v1/namespaces",
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield cluster


@pytest.fixture
async def store(api_server: KubeCluster) -> AsyncIterator[Cluster]:
    async with await connect(api_server.kubeconfig_path, kinds=install_kinds()) as cluster:
        await clean(cluster)
        try:
            await cluster.delete("v1", "Secret", PKI_SECRET, NAMESPACE)
        except NotFound:
            pass
        yield cluster


async def serving(cluster: Cluster) -> KeyPair:
    secret = await cluster.get("v1", "Secret", dep.APISERVER_SERVING_SECRET, NAMESPACE)
    return KeyPair(base64.b64decode(secret["data"]["tls.crt"]), base64.b64decode(secret["data"]["tls.key"]))


async def deployments_ready(cluster: Cluster) -> None:
    """What the Deployment controller would write once the pods run (the harness has no kubelet)."""
    for name in (dep.CONTROLLER, dep.APISERVER, dep.UPLOADPROXY):
        deployment = await cluster.get("apps/v1", "Deployment", name, NAMESPACE)
        wanted = deployment["spec"].get("replicas", 1)
        await cluster.patch_status("apps/v1", "Deployment", name, {"status": {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": wanted,
            "updatedReplicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted}}, NAMESPACE)


async def reconcile(cluster: Cluster, clock: StepClock, resync: float | None) -> float | None:
    reconciler = OperatorReconciler(cluster, clock, ManifestInstaller(cluster, namespace=NAMESPACE,
                                                                      image="registry.example/pycdi:v1",
                                                                      clock=clock.now),
                                    namespace=NAMESPACE, version="v1.0.0", resync=resync)
    for _ in range(10):
        result = await reconciler.reconcile(Key("", "cdi"))
        if result.requeue_after != 0.0:
            return result.requeue_after
    raise AssertionError("the reconciler kept asking to run again")


@pytest.mark.slow
async def test_the_reconciler_renews_a_short_lived_certificate_when_it_falls_due(store: Cluster,
                                                                                 clock: StepClock) -> None:
    await store.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": "cdi"},
                        "spec": {"certConfig": SHORT}})
    start = clock.now()
    assert await reconcile(store, clock, None) == 30.0  # Deploying: the Deployments' pods are not ready
    await deployments_ready(store)
    assert await reconcile(store, clock, None) == 3600.0  # Deployed, no resync: woken for the renewal, 1h in
    assert (await store.get(CDI_API, "CDI", "cdi"))["status"]["phase"] == "Deployed"
    first = await serving(store)
    assert issued_for(first) == 90 * M + BACKDATE and first.expires() == start + 90 * M
    assert await reconcile(store, clock, 600.0) == 600.0  # the resync comes first
    clock.advance(59 * 60)
    assert await reconcile(store, clock, 600.0) == 60.0  # renewal in a minute: sooner than the resync
    assert await serving(store) == first
    clock.advance(60)
    assert await reconcile(store, clock, 600.0) == 600.0
    second = await serving(store)
    assert second != first and second.expires() == clock.now() + 90 * M
    assert issued_for(second) == 90 * M + BACKDATE


@pytest.mark.slow
async def test_an_invalid_cert_config_is_degraded_with_the_reason(store: Cluster, clock: StepClock) -> None:
    await store.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": "cdi"},
                        "spec": {"certConfig": {"server": {"duration": "1h", "renewBefore": "2h"}}}})
    await reconcile(store, clock, 600.0)
    cdi = await store.get(CDI_API, "CDI", "cdi")
    degraded = next(c for c in cdi["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True", "InvalidCertConfig", "spec.certConfig.server: duration is smaller than renewBefore "
                                     "(1h is not longer than 2h)")
    assert (await serving(store)).expires() - clock.now() == 365 * D  # the default lifetime meanwhile
