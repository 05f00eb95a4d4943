"""The rendered install: every object well-formed, named as the contract names it, and consistent with the
others (Services select Deployments, pods mount what is rendered, bindings name rendered roles)."""

from __future__ import annotations

import base64
from typing import Any

from cdi.api.crdgen import all_crds
from cdi.api.meta import UPLOAD_GROUP
from cdi.cluster.kinds import UnknownKind
from cdi.contracts import deployment as dep
from cdi.install import InstallOptions, render_all
from cdi.install.objects import install_kinds
from cdi.install.rbac import AUTH_DELEGATOR, AUTH_NAMESPACE, AUTH_READER_ROLE
from cdi.install.tls import Credentials
from cdi.install.webhooks import WEBHOOKS
from tests.install.conftest import IMAGE, NAMESPACE, of_kind

Docs = list[dict[str, Any]]


def test_every_object_is_a_kubernetes_object_of_a_known_kind(documents: Docs) -> None:
    kinds = install_kinds()
    seen = set()
    for doc in documents:
        assert set(doc) >= {"apiVersion", "kind", "metadata"}, doc
        served = kinds.lookup(doc["apiVersion"], doc["kind"])  # raises UnknownKind
        meta = doc["metadata"]
        assert meta["name"] and meta["labels"]["app"] == "containerized-data-importer"
        if served.namespaced:
            assert meta["namespace"] in (NAMESPACE, AUTH_NAMESPACE), doc["kind"]
        else:
            assert "namespace" not in meta, doc["kind"]
        key = (doc["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)


def test_unknown_kinds_are_refused_by_the_registry() -> None:
    try:
        install_kinds().lookup("v1", "Nonsense")
    except UnknownKind:
        return
    raise AssertionError("lookup of an unknown kind succeeded")


def test_the_namespace_comes_first_and_enforces_the_restricted_profile(documents: Docs) -> None:
    first = documents[0]
    assert (first["kind"], first["metadata"]["name"]) == ("Namespace", NAMESPACE)
    assert first["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_webhooks_and_the_api_service_come_last(documents: Docs) -> None:
    tail = {d["kind"] for d in documents[-(len(WEBHOOKS) + 1):]}
    assert tail == {"APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}


def test_every_crd_of_the_api_is_rendered(documents: Docs) -> None:
    assert set(of_kind(documents, "CustomResourceDefinition")) == {c["metadata"]["name"] for c in all_crds()}


def test_components_are_named_as_the_contract_names_them(documents: Docs) -> None:
    assert set(of_kind(documents, "Deployment")) == {dep.CONTROLLER, dep.APISERVER, dep.UPLOADPROXY}
    assert set(of_kind(documents, "ServiceAccount")) == {dep.CONTROLLER_SA, dep.APISERVER_SA, dep.UPLOADPROXY_SA}
    assert set(of_kind(documents, "Service")) == {dep.APISERVER_SERVICE, dep.UPLOADPROXY_SERVICE, dep.METRICS_SERVICE}
    assert {dep.APISERVER_SERVING_SECRET, dep.UPLOADPROXY_SERVING_SECRET} <= set(of_kind(documents, "Secret"))
    assert dep.APISERVER_CA_BUNDLE in of_kind(documents, "ConfigMap")
    assert set(of_kind(documents, "APIService")) == {dep.UPLOAD_API_SERVICE}
    roles = of_kind(documents, "ClusterRole")
    assert {*dep.AGGREGATE_ROLES, dep.CLONE_SOURCER_ROLE, dep.CONFIG_READER_ROLE} <= set(roles)


def test_each_deployment_runs_the_one_image_as_non_root(documents: Docs) -> None:
    commands = {}
    for name, deployment in of_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, name
            assert container["image"] == IMAGE, name
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
            assert container["livenessProbe"]["httpGet"]["path"] and container["readinessProbe"]["httpGet"]["path"]
            probe_ports = {container["livenessProbe"]["httpGet"]["port"], container["readinessProbe"]["httpGet"]["port"]}
            assert probe_ports <= {p["containerPort"] for p in container["ports"]}, name
            commands[name] = [*container["command"], *container.get("args", [])]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert commands[dep.CONTROLLER][:2] == ["cdi", "controller"]
    assert commands[dep.CONTROLLER][commands[dep.CONTROLLER].index("--namespace") + 1] == NAMESPACE
    assert commands[dep.APISERVER] == ["cdi", "apiserver", "--namespace", NAMESPACE, "--port", str(dep.APISERVER_PORT)]
    assert commands[dep.UPLOADPROXY] == ["cdi-uploadproxy"]


def test_pods_use_only_rendered_accounts_secrets_and_config_maps(documents: Docs) -> None:
    secrets, maps = set(of_kind(documents, "Secret")), set(of_kind(documents, "ConfigMap"))
    accounts = set(of_kind(documents, "ServiceAccount"))
    for name, deployment in of_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in accounts, name
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, (name, volume)
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, (name, volume)
        mounted = {m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert mounted == {v["name"] for v in pod["volumes"]}, name
    # The one thing not rendered: the API server creates its token signing key, the proxy reads its public half.
    proxy = of_kind(documents, "Deployment")[dep.UPLOADPROXY]["spec"]["template"]["spec"]["containers"][0]
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in proxy["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs == [dep.SIGNING_KEY_SECRET]


def test_services_select_their_deployment_and_reach_a_container_port(documents: Docs) -> None:
    deployments = of_kind(documents, "Deployment")
    # The metrics Service selects by upstream's prometheus label and a port *name*: the controller's pods here,
    # the operator's too where it runs (tests/monitoring/test_operator_metrics.py).
    expected = {dep.APISERVER_SERVICE: ({dep.APISERVER}, 443, dep.APISERVER_PORT),
                dep.UPLOADPROXY_SERVICE: ({dep.UPLOADPROXY}, 443, dep.UPLOADPROXY_PORT),
                dep.METRICS_SERVICE: ({dep.CONTROLLER}, dep.METRICS_PORT, dep.HEALTH_PORT)}
    for name, service in of_kind(documents, "Service").items():
        components, port, target = expected[name]
        selected = {component for component, deployment in deployments.items()
                    if service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()}
        assert selected == components, name
        (entry,) = service["spec"]["ports"]
        assert entry["port"] == port, name
        for component in components:
            ports = [p for c in deployments[component]["spec"]["template"]["spec"]["containers"] for p in c["ports"]]
            assert [p["containerPort"] for p in ports if entry["targetPort"] in (p["containerPort"], p["name"])] == [
                target], name


def test_every_webhook_path_is_the_contracts_and_every_contract_path_is_served(documents: Docs, creds: Credentials
                                                                              ) -> None:
    configurations = [*of_kind(documents, "ValidatingWebhookConfiguration").values(),
                      *of_kind(documents, "MutatingWebhookConfiguration").values()]
    hooks = [hook for c in configurations for hook in c["webhooks"]]
    paths = {hook["clientConfig"]["service"]["path"] for hook in hooks}
    assert paths == set(dep.WEBHOOK_PATHS.values())
    crd_plurals = {c["spec"]["names"]["plural"] for c in of_kind(documents, "CustomResourceDefinition").values()}
    for hook in hooks:
        key = hook["name"].removesuffix(dep.WEBHOOK_SUFFIX)
        assert dep.WEBHOOK_PATHS[key] == hook["clientConfig"]["service"]["path"]
        assert hook["clientConfig"]["service"] == {"namespace": NAMESPACE, "name": dep.APISERVER_SERVICE,
                                                   "path": dep.WEBHOOK_PATHS[key], "port": 443}
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == creds.ca.cert_pem
        assert (hook["sideEffects"], hook["matchPolicy"], hook["admissionReviewVersions"]) == ("None", "Exact", ["v1"])
        assert hook["timeoutSeconds"] == 30
        for rule in hook["rules"]:
            assert set(rule["resources"]) <= crd_plurals
        # Only the uninstall check may be skipped when the API server is down, as upstream.
        assert hook["failurePolicy"] == ("Ignore" if key == "cdi-validate" else "Fail"), key


def test_webhook_rules_are_upstreams(documents: Docs) -> None:
    rules = {hook["name"].removesuffix(dep.WEBHOOK_SUFFIX): (hook["rules"][0]["operations"], hook["rules"][0]["resources"])
             for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
             for c in of_kind(documents, kind).values() for hook in c["webhooks"]}
    assert rules == {
        "datavolume-validate": (["CREATE", "UPDATE"], ["datavolumes"]),
        "datavolume-mutate": (["CREATE", "UPDATE"], ["datavolumes"]),
        "cdi-validate": (["DELETE"], ["cdis"]),
        "objecttransfer-validate": (["CREATE", "UPDATE"], ["objecttransfers"]),
        "dataimportcron-validate": (["CREATE", "UPDATE"], ["dataimportcrons"]),
        "populator-validate": (["CREATE", "UPDATE"], ["volumeimportsources", "volumeuploadsources"]),
    }
    mutating = of_kind(documents, "MutatingWebhookConfiguration")["cdi-api-datavolume-mutate"]
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "Never"


def test_the_upload_api_service_points_at_cdi_api_and_trusts_the_install_ca(documents: Docs, creds: Credentials
                                                                           ) -> None:
    spec = of_kind(documents, "APIService")[dep.UPLOAD_API_SERVICE]["spec"]
    assert (spec["group"], spec["version"]) == (UPLOAD_GROUP, "v1beta1")
    assert spec["service"] == {"namespace": NAMESPACE, "name": dep.APISERVER_SERVICE, "port": 443}
    assert (spec["groupPriorityMinimum"], spec["versionPriority"]) == (1000, 15)
    assert base64.b64decode(spec["caBundle"]) == creds.ca.cert_pem


def test_bindings_name_rendered_or_built_in_roles_and_rendered_accounts(documents: Docs) -> None:
    cluster_roles, roles = set(of_kind(documents, "ClusterRole")), set(of_kind(documents, "Role"))
    accounts = set(of_kind(documents, "ServiceAccount"))
    for doc in documents:
        if doc["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        ref = doc["roleRef"]
        if ref["kind"] == "ClusterRole":
            assert ref["name"] in cluster_roles | {AUTH_DELEGATOR}, doc["metadata"]["name"]
        else:
            assert ref["name"] in roles | {AUTH_READER_ROLE}, doc["metadata"]["name"]
            if ref["name"] == AUTH_READER_ROLE:
                assert doc["metadata"]["namespace"] == AUTH_NAMESPACE
        for subject in doc["subjects"]:
            if subject["kind"] == "ServiceAccount":
                assert subject["name"] in accounts and subject["namespace"] == NAMESPACE


def test_rendering_is_pure(creds: Credentials) -> None:
    options = InstallOptions(creds, NAMESPACE, IMAGE)
    assert render_all(options) == render_all(options)
