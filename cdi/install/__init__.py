"""Everything a cluster installs, rendered as plain Kubernetes documents: `render_all(options)`.

`cdi manifests` (`cdi.cli.installmanifests`) prints them for `kubectl apply --server-side -f -`;
tests apply them through `cdi.install.serverside`. Pure renderers, one module per concern:
`crds` (CDI's CRDs), `rbac` (service accounts, least-privilege roles, users' aggregated roles),
`tls` (the install's certificates and the Secrets and ConfigMaps holding them), `workloads` (the
three Deployments and their Services), `webhooks` (the upload APIService and the admission webhooks,
trusting the install CA), `alerts` (the PrometheusRule and ServiceMonitor, only with `monitoring`: they
need the prometheus-operator's CRDs). Names come from `cdi.contracts.deployment`.

Documents are ordered so that a plain apply works in one pass: the Namespace and CRDs first, then
identities and permissions, certificates, Services and Deployments, and last what makes the API
server call CDI (APIService, webhooks), so writes are not sent to a webhook before its configuration
has a Service behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.contracts import deployment as dep
from cdi.install.alerts import monitoring_objects
from cdi.install.crds import crds
from cdi.install.objects import Object, document, metadata
from cdi.install.rbac import rbac
from cdi.install.tls import Credentials, tls_objects
from cdi.install.webhooks import upload_api_service, webhook_configurations
from cdi.install.workloads import DEFAULT_IMAGE, services, workloads

__all__ = ["DEFAULT_IMAGE", "InstallOptions", "namespace_object", "render_all"]

# CDI's own pods need nothing more than the restricted profile; worker pods run in users' namespaces.
POD_SECURITY = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


@dataclass(frozen=True)
class InstallOptions:
    credentials: Credentials
    namespace: str = dep.NAMESPACE
    image: str = DEFAULT_IMAGE
    monitoring: bool = False  # also the PrometheusRule and ServiceMonitor (prometheus-operator's kinds), last


def namespace_object(namespace: str) -> Object:
    return document("v1", "Namespace", metadata(namespace, extra_labels=POD_SECURITY))


def render_all(options: InstallOptions) -> list[Object]:
    """Every object of an install, in apply order."""
    namespace, bundle = options.namespace, options.credentials.ca_bundle
    return [namespace_object(namespace), *crds(), *rbac(namespace), *tls_objects(namespace, options.credentials),
            *services(namespace), *workloads(namespace, options.image), upload_api_service(namespace, bundle),
            *webhook_configurations(namespace, bundle), *(monitoring_objects(namespace) if options.monitoring else [])]
