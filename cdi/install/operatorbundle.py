"""What installs the operator itself (upstream's `cdi-operator.yaml`), and the CDI resource that asks it to install
CDI (upstream's `cdi-cr.yaml`): `operator_bundle(namespace, image)` and `cdi_resource()`.

The bundle is the Namespace, the CDI resource's own CRD (the other CRDs are the operator's to apply, under the
CR), the operator's service account and roles (`cdi.install.rbac.operator_rbac`) and its Deployment
`cdi-operator` running `cdi operator` from the same image as every component (uid 1001, the restricted Pod
Security profile, health probes). Its pods carry upstream's `prometheus.cdi.kubevirt.io: "true"` and its port
8080 is named `metrics` (health and `/metrics` share it), so the install's `cdi-prometheus-metrics` Service and
the ServiceMonitor (`cdi manifests --monitoring`, `cdi operator --monitoring`) scrape it: the `up` series
behind `CDIOperatorDown`. `cdi operator --print-manifests` prints both, for `kubectl apply
--server-side -f -`. Pure.
"""

from __future__ import annotations

from cdi.api.meta import CDI_API_VERSION
from cdi.install import namespace_object
from cdi.install.crds import crds
from cdi.install.objects import Object, document
from cdi.install.rbac import OPERATOR_ROLE, operator_rbac
from cdi.install.workloads import METRICS_PORT_NAME, SCRAPED, deployment

OPERATOR = OPERATOR_ROLE  # the Deployment, its container and service account share the name
OPERATOR_HEALTH_PORT = 8080
CDI_CRD = "cdis.cdi.kubevirt.io"


def operator_deployment(namespace: str, image: str) -> Object:
    container = {"name": OPERATOR, "image": image, "command": ["cdi"],
                 "args": ["operator", "--namespace", namespace, "--image", image,
                          "--health-port", str(OPERATOR_HEALTH_PORT)],
                 "ports": [{"name": METRICS_PORT_NAME, "containerPort": OPERATOR_HEALTH_PORT, "protocol": "TCP"}],
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": OPERATOR_HEALTH_PORT},
                                   "initialDelaySeconds": 15, "periodSeconds": 10}}
    return deployment(OPERATOR, namespace, OPERATOR, container, [], pod_labels=SCRAPED)


def operator_bundle(namespace: str, image: str) -> list[Object]:
    """Everything the operator needs before the first CDI resource, in apply order."""
    cdi_crd = [crd for crd in crds() if crd["metadata"]["name"] == CDI_CRD]
    return [namespace_object(namespace), *cdi_crd, *operator_rbac(namespace), operator_deployment(namespace, image)]


def cdi_resource(name: str = "cdi") -> Object:
    """Upstream's default CR: control plane (`infra`) and worker pods (`workload`) on Linux nodes."""
    return document(CDI_API_VERSION, "CDI", {"name": name},
                    spec={"config": {"featureGates": ["HonorWaitForFirstConsumer"]},
                          "imagePullPolicy": "IfNotPresent", "infra": {"nodeSelector": {"kubernetes.io/os": "linux"}},
                          "workload": {"nodeSelector": {"kubernetes.io/os": "linux"}}})
