"""End to end on a real API server: `cdi operator` as a process reconciles a CDI resource.

The module starts its own etcd + kube-apiserver + kube-controller-manager (garbage collector, namespace and
service-account controllers): the operator makes the CR the owner of everything it installs, CDI's CRDs
included, so deleting the CR deletes them, which must not happen to the session's shared control plane.
CDI's CRDs are created first (the CDI kind must exist to create the CR; the operator then takes over the
others with server-side apply). The operator runs as its service account `cdi-operator` with the roles of
`cdi.install.rbac.operator_rbac`, so the test also shows they suffice.

There is no kubelet in the harness, so the three Deployments' pods never run and never become ready: the
CR stays in phase Deploying with Progressing True, which is what this test checks, not Deployed. For the
uninstall, the test runs `cdi apiserver` itself on 127.0.0.1 with the serving certificate the operator issued,
and the CR's own customizeComponents patches point Service cdi-api (an ExternalName) and the cdi-validate
webhook at it: the API server then refuses the DELETE with upstream's message. With that process stopped the
webhook cannot be reached (failurePolicy Ignore, as upstream) and the DELETE is accepted; the operator's own
guard then keeps the finalizer, with a Degraded condition and an event, until the strategy changes. The
DataVolume is created before the CR, while no webhook is registered yet: afterwards the datavolume webhooks
(failurePolicy Fail) point at port 443 of nothing and would refuse it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdi.cluster.errors import ApiError, NotFound
from cdi.cluster.protocol import Cluster
from cdi.install import InstallOptions, render_all
from cdi.install.alerts import ALERTS, recording_rules
from cdi.install.objects import install_kinds
from cdi.install.rbac import operator_rbac
from cdi.install.serverside import apply_documents
from cdi.install.tls import credentials
from cdi.kube import connect
from tests.monitoring.promql import Sample, evaluate, parse_exposition, record
from tests.support.backends import install_crds
from tests.support.daemon import CDI, running
from tests.support.kubecluster import KubeBinariesUnavailable, KubeCluster, free_port, kube_binaries

pytestmark = pytest.mark.slow
CDI_API = "cdi.kubevirt.io/v1beta1"
NAMESPACE = "cdi"
IMAGE = "registry.example/pycdi:v1.0.0"
VERSION = "v1.0.0"
CONFIG = {"featureGates": ["HonorWaitForFirstConsumer"], "scratchSpaceStorageClass": "fast",
          "podResourceRequirements": {"limits": {"cpu": "1", "memory": "1Gi"}}}
REFUSAL = ("Rejecting the uninstall request, since there are still DataVolumes present. Either delete all "
           "DataVolumes or change the uninstall strategy before uninstalling CDI.")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    try:
        binaries = kube_binaries()
    except KubeBinariesUnavailable as unavailable:
        pytest.skip(str(unavailable))
    with KubeCluster(binaries, tmp_path_factory.mktemp("kube-operator"),
                     controllers=("garbage-collector-controller", "namespace-controller",
                                  "serviceaccount-controller")) as cluster:
        install_crds(cluster)
        for namespace in (NAMESPACE, "vms"):
            cluster.request("POST", "/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        asyncio.run(_apply(cluster.kubeconfig_path, operator_rbac(NAMESPACE)))
        yield cluster


async def _apply(kubeconfig: Path, documents: list[dict[str, Any]]) -> None:
    async with await connect(kubeconfig, kinds=install_kinds()) as cluster:
        await apply_documents(cluster, documents)


@pytest.fixture(scope="module")
def operator_port() -> int:
    """The operator's health port, where it also serves /metrics (as its Deployment runs it)."""
    return free_port()


@pytest.fixture(scope="module")
def operator(control_plane: KubeCluster, operator_port: int, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Path]:
    port, log = operator_port, tmp_path_factory.mktemp("operator") / "operator.log"

    def healthy(_process: object) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)

    # As its service account, with the roles `cdi operator --print-manifests` ships: enough to install and
    # remove CDI (RBAC included, through escalate and bind), as a pod of the operator's Deployment would be.
    account = control_plane.kubeconfig_for(f"system:serviceaccount:{NAMESPACE}:cdi-operator",
                                           ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"])
    argv = [CDI, "operator", "--kubeconfig", str(account), "--namespace", NAMESPACE,
            "--image", IMAGE, "--health-port", str(port)]
    with running("cdi operator", argv, log, healthy, env={**os.environ, "OPERATOR_VERSION": VERSION}):
        yield log


async def eventually(what: str, check: Callable[[], Awaitable[Any]], log: Path | None = None,
                     timeout: float = 60.0) -> Any:
    """`check()` until it returns something (NotFound counts as nothing); on timeout the operator's log tail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            found = await check()
        except NotFound:
            found = None
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        await asyncio.sleep(0.2)


def conditions(cdi: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
    return {c["type"]: (c["status"], c.get("reason"), c.get("message"))
            for c in (cdi.get("status") or {}).get("conditions") or []}


async def exists(cluster: Cluster, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
    try:
        await cluster.get(api_version, kind, name, namespace)
    except NotFound:
        return False
    return True


def expected_objects() -> list[tuple[str, str, str, str | None]]:
    """What the operator installs: the documents of `cdi manifests` minus the Namespace and the CDI CRD."""
    rendered = render_all(InstallOptions(credentials(NAMESPACE, datetime.now(UTC)), NAMESPACE, IMAGE))
    return [(d["apiVersion"], d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in rendered
            if d["kind"] != "Namespace" and d["metadata"]["name"] != "cdis.cdi.kubevirt.io"]


def webhook_patches(port: int) -> list[dict[str, Any]]:
    """customizeComponents patches that let the API server reach a `cdi apiserver` run by the test on 127.0.0.1:
    Service cdi-api as an ExternalName (the API server resolves it itself, no kube-proxy needed) and the
    cdi-validate webhook's port."""
    return [{"resourceName": "cdi-api", "resourceType": "Service", "type": "merge",
             "patch": json.dumps({"spec": {"type": "ExternalName", "externalName": "127.0.0.1", "selector": None}})},
            {"resourceName": "cdi-api-validate", "resourceType": "ValidatingWebhookConfiguration", "type": "json",
             "patch": json.dumps([{"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": port}])}]


@contextmanager
def cdi_apiserver(control_plane: KubeCluster, *, cluster_secret: dict[str, Any], port: int,
                  work: Path) -> Iterator[None]:
    """`cdi apiserver` on 127.0.0.1:`port` with the serving certificate the operator issued (Secret
    cdi-apiserver-server-cert, for cdi-api.cdi.svc, signed by the CA the webhooks' caBundle names)."""
    files = {key: work / key for key in ("tls.crt", "tls.key", "ca.crt")}
    for key, path in files.items():
        path.write_bytes(base64.b64decode(cluster_secret["data"][key]))
    context = ssl.create_default_context(cafile=str(files["ca.crt"]))
    context.check_hostname = False  # the certificate names the Service, we call 127.0.0.1

    def healthy(_process: object) -> bool:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as reply:
            return bool(reply.status == 200)

    argv = [CDI, "apiserver", "--kubeconfig", str(control_plane.kubeconfig_path), "--namespace", NAMESPACE,
            "--bind-address", "127.0.0.1", "--port", str(port), "--tls-cert-file", str(files["tls.crt"]),
            "--tls-private-key-file", str(files["tls.key"])]
    with running("cdi apiserver", argv, work / "cdi-apiserver.log", healthy):
        yield


def scrape(port: int) -> list[Sample]:
    """A scrape as Prometheus makes it, parsed with prometheus_client's parser (`tests.monitoring.promql`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return parse_exposition(reply.read().decode())


def value(samples: list[Sample], metric: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == metric and labels.items() <= s.labels.items()]
    return sum(found) if found else None


async def test_the_operator_installs_refuses_a_second_cr_and_uninstalls_by_its_strategy(
        control_plane: KubeCluster, operator: Path, operator_port: int, tmp_path: Path) -> None:
    async with await connect(control_plane.kubeconfig_path, kinds=install_kinds()) as cluster:
        await cluster.create({"apiVersion": CDI_API, "kind": "DataVolume",
                              "metadata": {"name": "precious", "namespace": "vms"},
                              "spec": {"source": {"blank": {}},
                                       "storage": {"resources": {"requests": {"storage": "1Gi"}}}}})
        webhook_port = free_port()
        cr = await cluster.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": "cdi"}, "spec": {
            "uninstallStrategy": "BlockUninstallIfWorkloadsExist", "config": CONFIG, "imagePullPolicy": "Always",
            "infra": {"nodeSelector": {"node-role.kubernetes.io/infra": ""}, "apiServerReplicas": 2},
            "customizeComponents": {"flags": {"controller": {"v": "3"}}, "patches": webhook_patches(webhook_port)}}})
        uid = cr["metadata"]["uid"]

        async def deploying() -> dict[str, Any] | None:
            cdi = await cluster.get(CDI_API, "CDI", "cdi")
            return cdi if (cdi.get("status") or {}).get("phase") == "Deploying" else None

        cdi = await eventually("phase Deploying", deploying, operator)
        assert cdi["metadata"]["finalizers"] == ["operator.cdi.kubevirt.io"]
        assert conditions(cdi) == {"Available": ("False", None, None),
                                   "Progressing": ("True", "DeployStarted", "Started Deployment"),
                                   "Degraded": ("False", None, None)}
        assert (cdi["status"]["operatorVersion"], cdi["status"]["targetVersion"]) == (VERSION, VERSION)
        # The operator's own page: the CR is not Available (no kubelet runs the Deployments' pods), and its
        # controller has reconciled.
        samples = scrape(operator_port)
        assert value(samples, "kubevirt_cdi_cr_ready") == 0.0
        assert (value(samples, "controller_runtime_reconcile_total", controller="cdi-operator") or 0) > 0

        # Every object of the install appears, controlled by the CR and labelled with the versions.
        for api_version, kind, name, namespace in expected_objects():
            async def installed(api_version: str = api_version, kind: str = kind, name: str = name,
                                namespace: str | None = namespace) -> dict[str, Any] | None:
                # The CRDs exist before the operator runs: wait until it has applied each object.
                obj = await cluster.get(api_version, kind, name, namespace)
                return obj if obj["metadata"].get("ownerReferences") else None
            obj = await eventually(f"{kind} {name}", installed, operator)
            meta = obj["metadata"]
            assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in meta["ownerReferences"]] == \
                [("CDI", "cdi", uid, True)], (kind, name)
            assert meta["labels"]["operator.cdi.kubevirt.io/createVersion"] == VERSION, (kind, name)
            assert meta["labels"]["operator.cdi.kubevirt.io/updateVersion"] == VERSION, (kind, name)
        async def configured() -> dict[str, Any] | None:
            # The operator writes spec.config into CDIConfig after applying the install: wait for it.
            config = await cluster.get(CDI_API, "CDIConfig", "config")
            return config if config.get("spec") == CONFIG else None
        await eventually("CDIConfig with spec.config", configured, operator)
        controller = await cluster.get("apps/v1", "Deployment", "cdi-deployment", NAMESPACE)
        pod = controller["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "node-role.kubernetes.io/infra": ""}
        assert pod["containers"][0]["imagePullPolicy"] == "Always"
        assert pod["containers"][0]["args"][-2:] == ["-v", "3"]
        assert (await cluster.get("apps/v1", "Deployment", "cdi-apiserver", NAMESPACE))["spec"]["replicas"] == 2

        # No kubelet: the Deployments never become ready, so the CR stays Deploying.
        await asyncio.sleep(2)
        cdi = await cluster.get(CDI_API, "CDI", "cdi")
        assert cdi["status"]["phase"] == "Deploying" and "observedVersion" not in cdi["status"]

        # A second CR is refused.
        await cluster.create({"apiVersion": CDI_API, "kind": "CDI", "metadata": {"name": "cdi-2"}, "spec": {}})

        async def second_in_error() -> dict[str, Any] | None:
            second = await cluster.get(CDI_API, "CDI", "cdi-2")
            return second if (second.get("status") or {}).get("phase") == "Error" else None

        second = await eventually("cdi-2 in Error", second_in_error, operator)
        assert conditions(second)["Degraded"] == ("True", "ConfigError",
                                                  "Reconciling to error state, unwanted CDI object")
        await cluster.delete(CDI_API, "CDI", "cdi-2")

        # Uninstall is refused by cdi-apiserver's cdi-validate webhook while a DataVolume exists ...
        with cdi_apiserver(control_plane, cluster_secret=await cluster.get(
                "v1", "Secret", "cdi-apiserver-server-cert", NAMESPACE), port=webhook_port, work=tmp_path):
            with pytest.raises(ApiError) as refused:
                await cluster.delete(CDI_API, "CDI", "cdi")
            assert "cdi-validate.cdi.kubevirt.io" in refused.value.message and REFUSAL in refused.value.message, \
                refused.value.message
            assert "deletionTimestamp" not in (await cluster.get(CDI_API, "CDI", "cdi"))["metadata"]

        # ... and, where the webhook is not reached (failurePolicy Ignore), by the operator keeping its finalizer.
        await cluster.delete(CDI_API, "CDI", "cdi")

        async def blocked() -> dict[str, Any] | None:
            cdi = await cluster.get(CDI_API, "CDI", "cdi")
            return cdi if conditions(cdi).get("Degraded", ("",))[0:2] == ("True", "UninstallBlocked") else None

        cdi = await eventually("the uninstall refused", blocked, operator)
        assert conditions(cdi)["Degraded"][2] == REFUSAL
        assert cdi["metadata"]["finalizers"] == ["operator.cdi.kubevirt.io"]
        events = (await cluster.list("v1", "Event", "default")).items
        assert any(e["reason"] == "UninstallBlocked" and e["involvedObject"]["name"] == "cdi" for e in events)
        assert await exists(cluster, CDI_API, "DataVolume", "precious", "vms")
        assert await exists(cluster, "apps/v1", "Deployment", "cdi-deployment", NAMESPACE)

        # RemoveWorkloads: the DataVolume goes, then the finalizer, then (garbage collection) the install.
        await cluster.patch(CDI_API, "CDI", "cdi", {"spec": {"uninstallStrategy": "RemoveWorkloads"}})

        async def cr_gone() -> bool:
            return not await exists(cluster, CDI_API, "CDI", "cdi")

        await eventually("the CR deleted", cr_gone, operator)

        async def install_gone() -> bool:
            return not any([await exists(cluster, "apps/v1", "Deployment", name, NAMESPACE)
                            for name in ("cdi-deployment", "cdi-apiserver", "cdi-uploadproxy")]) \
                and not await exists(cluster, "v1", "ConfigMap", "cdi-config", NAMESPACE)

        await eventually("the install garbage-collected", install_gone, operator, timeout=120)

        async def datavolumes_gone() -> bool:
            try:
                return not await exists(cluster, CDI_API, "DataVolume", "precious", "vms")
            except NotFound:
                return True

        assert await datavolumes_gone()


def _operator_down(up: list[Sample], samples: list[Sample]) -> bool:
    db = record([(rule.name, rule.expr) for rule in recording_rules(NAMESPACE)], [*samples, *up])
    return bool(evaluate(next(a for a in ALERTS if a.name == "CDIOperatorDown").expr, db))


def prometheus_scrape(port: int) -> tuple[list[Sample], list[Sample]]:
    """What Prometheus records for one scrape of an operator pod's target: its samples, and `up` (1 when the
    page was served and parsed, 0 when not), labelled with the pod name its Deployment would give it."""
    try:
        samples, answered = scrape(port), 1.0
    except OSError:
        samples, answered = [], 0.0
    return samples, [Sample({"__name__": "up", "namespace": NAMESPACE, "pod": "cdi-operator-6d9f8b7c5-x2kqz",
                             "service": "cdi-prometheus-metrics", "endpoint": "metrics"}, answered)]


async def test_the_operators_metrics_page_and_cdi_operator_down(control_plane: KubeCluster, operator: Path,
                                                                 operator_port: int) -> None:
    """`cdi operator` serves upstream's operator series, controller-runtime's for its controller and
    `process_*`; `CDIOperatorDown` evaluated over what Prometheus records scraping it, and a dead one."""
    samples, up = prometheus_scrape(operator_port)
    names = {s.name for s in samples}
    assert {"kubevirt_cdi_cr_ready", "controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
            "controller_runtime_reconcile_time_seconds_bucket", "controller_runtime_max_concurrent_reconciles",
            "controller_runtime_active_workers", "workqueue_depth", "workqueue_adds_total",
            "workqueue_queue_duration_seconds_bucket", "workqueue_work_duration_seconds_bucket",
            "workqueue_retries_total", "workqueue_unfinished_work_seconds",
            "workqueue_longest_running_processor_seconds", "process_cpu_seconds_total"} <= names
    assert value(samples, "controller_runtime_max_concurrent_reconciles", controller="cdi-operator") == 1.0
    assert value(samples, "workqueue_depth", name="cdi-operator") is not None
    async with await connect(control_plane.kubeconfig_path) as cluster:
        cdis = (await cluster.list(CDI_API, "CDI")).items
    if not cdis:  # after the install test: no CDI resource, not "not ready" (CDINotReady stays quiet)
        assert value(samples, "kubevirt_cdi_cr_ready") == -1.0
    assert [s.value for s in up] == [1.0] and not _operator_down(up, samples)
    _nothing, dead = prometheus_scrape(free_port())  # nothing listens there: an operator that is down
    assert [s.value for s in dead] == [0.0] and _operator_down(dead, [])
    assert _operator_down([], [])  # no operator target at all
