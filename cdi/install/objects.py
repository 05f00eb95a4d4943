"""The metadata every object of a cluster install carries, and the kinds an install applies.

The renderers (`cdi.install.rbac`, `workloads`, `webhooks`, `tls`, `crds`) build plain Kubernetes
documents with `metadata()` so that every object says it belongs to CDI (`app:
containerized-data-importer`, upstream's label) and which component it serves (`cdi.kubevirt.io:
<component>`). `INSTALL_KINDS` adds to `cdi.cluster.kinds` the kinds only an install writes
(ServiceAccounts, RBAC, Deployments, the APIService, webhook configurations), so `cdi.kube` can apply
them; `install_kinds()` is the registry to connect with.
"""

from __future__ import annotations

from typing import Any

from cdi.cluster.kinds import DEFAULT_KINDS, KindRegistry, ResourceKind
from cdi.contracts import annotations as ann
from cdi.contracts import deployment as dep

Object = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "cdi-manifests"  # the value of MANAGED_BY, and the field manager `kubectl apply --server-side` is told

RBAC_API = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"

INSTALL_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("v1", "ServiceAccount", "serviceaccounts", True, short_names=("sa",)),
    ResourceKind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False, True,
                 ("crd", "crds")),
    ResourceKind(RBAC_API, "ClusterRole", "clusterroles", False),
    ResourceKind(RBAC_API, "ClusterRoleBinding", "clusterrolebindings", False),
    ResourceKind(RBAC_API, "Role", "roles", True),
    ResourceKind(RBAC_API, "RoleBinding", "rolebindings", True),
    ResourceKind("apps/v1", "Deployment", "deployments", True, True, ("deploy",)),
    ResourceKind("apiregistration.k8s.io/v1", "APIService", "apiservices", False, True),
    ResourceKind("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", False),
    ResourceKind("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", False),
)


def install_kinds() -> KindRegistry:
    """The default registry plus the kinds of an install: what `cdi.kube.connect(kinds=...)` needs to apply it."""
    known = {(kind.api_version, kind.kind) for kind in DEFAULT_KINDS}
    return KindRegistry((*DEFAULT_KINDS, *(k for k in INSTALL_KINDS if (k.api_version, k.kind) not in known)))


def labels(component: str | None = None) -> dict[str, str]:
    found = {ann.LABEL_APP: ann.APP_NAME, MANAGED_BY: MANAGER}
    if component:
        found[dep.COMPONENT_LABEL] = component
    return found


def metadata(name: str, namespace: str | None = None, *, component: str | None = None,
             extra_labels: dict[str, str] | None = None) -> Object:
    meta: Object = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**labels(component), **(extra_labels or {})}
    return meta


def document(api_version: str, kind: str, meta: Object, **fields: Any) -> Object:
    """A Kubernetes object: apiVersion, kind, metadata, then `fields` in order."""
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}
