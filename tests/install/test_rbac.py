"""Who may do what, as rendered: least privilege for CDI's components and upstream's roles for users."""

from __future__ import annotations

from typing import Any

from cdi.contracts import deployment as dep
from cdi.install.rbac import AUTHENTICATED, CONTROLLER_ROLE
from tests.install.conftest import NAMESPACE, of_kind

Docs = list[dict[str, Any]]


def grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any((group in r["apiGroups"] or "*" in r["apiGroups"]) and (resource in r["resources"] or "*" in r["resources"])
               and (verb in r["verbs"] or "*" in r["verbs"]) for r in rules)


def test_component_roles_name_every_resource_and_verb(documents: Docs) -> None:
    components = {CONTROLLER_ROLE, dep.APISERVER, dep.UPLOADPROXY}
    roles = [*(r for n, r in of_kind(documents, "ClusterRole").items() if n in components),
             *of_kind(documents, "Role").values()]
    assert len(roles) == 5
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], (role["metadata"]["name"], rule)
            assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]


def test_the_controller_writes_what_it_reconciles_and_never_lists_secrets(documents: Docs) -> None:
    cluster = of_kind(documents, "ClusterRole")[CONTROLLER_ROLE]["rules"]
    home = of_kind(documents, "Role")[CONTROLLER_ROLE]["rules"]
    for resource, verb in [("datavolumes", "watch"), ("datavolumes/status", "patch"), ("datavolumes", "create"),
                           ("storageprofiles", "create"), ("storageprofiles/status", "update"),
                           ("cdiconfigs", "update"), ("datasources", "patch"), ("dataimportcrons", "patch"),
                           ("volumeclonesources", "create"), ("volumeclonesources", "delete"),
                           ("volumeimportsources", "watch"), ("volumeuploadsources", "watch"), ("cdis", "patch")]:
        assert grants(cluster, "cdi.kubevirt.io", resource, verb), (resource, verb)
    for resource, verb in [("persistentvolumeclaims", "create"), ("persistentvolumeclaims", "delete"),
                           ("persistentvolumeclaims", "update"), ("persistentvolumes", "patch"),
                           ("persistentvolumes", "watch"), ("pods", "create"), ("pods", "delete"),
                           ("services", "create"), ("secrets", "create"), ("secrets", "delete"), ("secrets", "get"),
                           ("configmaps", "get"), ("events", "create")]:
        assert grants(cluster, "", resource, verb), (resource, verb)
    for resource, verb in [("volumesnapshots", "create"), ("volumesnapshots", "delete"),
                           ("volumesnapshotcontents", "watch"), ("volumesnapshotclasses", "list")]:
        assert grants(cluster, "snapshot.storage.k8s.io", resource, verb), (resource, verb)
    assert grants(cluster, "storage.k8s.io", "storageclasses", "list")
    assert grants(cluster, "storage.k8s.io", "csidrivers", "watch")
    # Never: all Secrets or ConfigMaps, a volume's life, the CDI kinds it only reads, reviews (admission's).
    assert not any(grants(cluster, "", "secrets", verb) for verb in ("list", "watch", "update", "patch"))
    assert not any(grants(cluster, "", "configmaps", verb) for verb in ("list", "watch", "create", "update"))
    assert not any(grants(cluster, "", "persistentvolumes", verb) for verb in ("create", "update", "delete"))
    assert not grants(cluster, "snapshot.storage.k8s.io", "volumesnapshotcontents", "delete")
    assert not grants(cluster, "cdi.kubevirt.io", "volumeimportsources", "patch")
    assert not grants(cluster, "cdi.kubevirt.io", "dataimportcrons", "create")
    assert not grants(cluster, "authorization.k8s.io", "subjectaccessreviews", "create")
    assert not grants(cluster, "authentication.k8s.io", "tokenreviews", "create")
    assert grants(home, "", "secrets", "update") and grants(home, "coordination.k8s.io", "leases", "update")
    assert not grants(cluster, "coordination.k8s.io", "leases", "update")


def test_the_api_server_delegates_authentication_and_keeps_its_key_at_home(documents: Docs) -> None:
    rules = of_kind(documents, "ClusterRole")[dep.APISERVER]["rules"]
    assert grants(rules, "authorization.k8s.io", "subjectaccessreviews", "create")
    assert not grants(rules, "", "secrets", "get")
    home = of_kind(documents, "Role")[dep.APISERVER]["rules"]
    assert grants(home, "", "secrets", "create") and not grants(home, "", "secrets", "update")
    bindings = {(b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace"))
                for kind in ("ClusterRoleBinding", "RoleBinding") for b in of_kind(documents, kind).values()
                if {"kind": "ServiceAccount", "name": dep.APISERVER_SA, "namespace": NAMESPACE} in b["subjects"]}
    assert bindings == {("ClusterRole", dep.APISERVER, None), ("ClusterRole", "system:auth-delegator", None),
                        ("Role", "extension-apiserver-authentication-reader", "kube-system"),
                        ("Role", dep.APISERVER, NAMESPACE)}


def test_the_upload_proxy_only_reads_what_resolves_an_upload(documents: Docs) -> None:
    (rule,) = of_kind(documents, "ClusterRole")[dep.UPLOADPROXY]["rules"]
    assert rule == {"apiGroups": [""], "resources": ["persistentvolumeclaims", "pods", "services"], "verbs": ["get"]}


def test_aggregated_roles_carry_upstreams_labels_and_verbs(documents: Docs) -> None:
    roles = of_kind(documents, "ClusterRole")
    for name, to in zip(dep.AGGREGATE_ROLES, ("admin", "edit", "view"), strict=True):
        assert roles[name]["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{to}"] == "true"
    admin, edit, view = (roles[name]["rules"] for name in dep.AGGREGATE_ROLES)
    assert admin == edit
    for kind in ("datavolumes", "dataimportcrons", "datasources", "volumeimportsources", "volumeuploadsources",
                 "volumeclonesources"):
        assert grants(admin, "cdi.kubevirt.io", kind, "*") and grants(view, "cdi.kubevirt.io", kind, "watch")
        assert not grants(view, "cdi.kubevirt.io", kind, "create")
    assert grants(admin, "cdi.kubevirt.io", "datavolumes/source", "create")
    assert grants(view, "cdi.kubevirt.io", "datavolumes/source", "create")  # upstream's view has it too
    assert grants(admin, "upload.cdi.kubevirt.io", "uploadtokenrequests", "*")
    assert not grants(view, "upload.cdi.kubevirt.io", "uploadtokenrequests", "create")
    for kind in ("cdiconfigs", "storageprofiles", "objecttransfers"):
        assert grants(view, "cdi.kubevirt.io", kind, "list") and not grants(admin, "cdi.kubevirt.io", kind, "list")


def test_clone_sourcer_and_config_reader(documents: Docs) -> None:
    roles = of_kind(documents, "ClusterRole")
    assert roles[dep.CLONE_SOURCER_ROLE]["rules"] == [
        {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes/source"], "verbs": ["create"]}]
    assert roles[dep.CONFIG_READER_ROLE]["rules"] == [
        {"apiGroups": ["cdi.kubevirt.io"], "resources": ["cdiconfigs", "storageprofiles"],
         "verbs": ["get", "list", "watch"]}]
    binding = of_kind(documents, "ClusterRoleBinding")[dep.CONFIG_READER_ROLE]
    assert binding["roleRef"]["name"] == dep.CONFIG_READER_ROLE
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": AUTHENTICATED}]
