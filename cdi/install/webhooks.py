"""How the Kubernetes API server reaches `cdi-apiserver`: the upload APIService and the admission webhooks.

The APIService `v1beta1.upload.cdi.kubevirt.io` sends UploadTokenRequests to Service `cdi-api`; the
webhook configurations send writes of CDI's kinds to the paths `cdi apiserver` serves
(`cdi.contracts.deployment.WEBHOOK_PATHS`), with upstream's rules: DataVolumes are validated and
mutated (a clone token is added) on create and update, the CDI resource is checked on delete with
failurePolicy Ignore (an unreachable API server must not block uninstalling), and ObjectTransfers,
DataImportCrons and the import/upload populator sources are validated on create and update. Every
webhook has sideEffects None, matchPolicy Exact and a 30 s timeout, and trusts the install CA
(`cdi.install.tls`). Configuration names are upstream's, so scripts written for upstream find them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdi.api.kinds import KINDS
from cdi.api.meta import CDI_GROUP, CDI_VERSION
from cdi.contracts import deployment as dep
from cdi.install.objects import Object, document, metadata

ADMISSION_API = "admissionregistration.k8s.io/v1"
SERVICE_PORT = 443
TIMEOUT_SECONDS = 30
CREATE_UPDATE = ("CREATE", "UPDATE")


@dataclass(frozen=True)
class Webhook:
    key: str  # in WEBHOOK_PATHS
    configuration: str  # upstream's name of the configuration holding it
    kinds: tuple[str, ...]
    operations: tuple[str, ...] = CREATE_UPDATE
    mutating: bool = False
    failure_policy: str = "Fail"

    @property
    def name(self) -> str:
        return self.key + dep.WEBHOOK_SUFFIX

    @property
    def path(self) -> str:
        return dep.WEBHOOK_PATHS[self.key]


WEBHOOKS: tuple[Webhook, ...] = (
    Webhook("datavolume-validate", "cdi-api-datavolume-validate", ("DataVolume",)),
    Webhook("datavolume-mutate", "cdi-api-datavolume-mutate", ("DataVolume",), mutating=True),
    Webhook("cdi-validate", "cdi-api-validate", ("CDI",), ("DELETE",), failure_policy="Ignore"),
    Webhook("objecttransfer-validate", "objecttransfer-api-validate", ("ObjectTransfer",)),
    Webhook("dataimportcron-validate", "cdi-api-dataimportcron-validate", ("DataImportCron",)),
    Webhook("populator-validate", "cdi-api-populator-validate", ("VolumeImportSource", "VolumeUploadSource")),
)


def _client_config(namespace: str, path: str, ca_bundle: str) -> Object:
    return {"service": {"namespace": namespace, "name": dep.APISERVER_SERVICE, "path": path, "port": SERVICE_PORT},
            "caBundle": ca_bundle}


def webhook_entry(hook: Webhook, namespace: str, ca_bundle: str) -> Object:
    entry: Object = {
        "name": hook.name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": _client_config(namespace, hook.path, ca_bundle),
        "rules": [{"operations": list(hook.operations), "apiGroups": [CDI_GROUP], "apiVersions": [CDI_VERSION],
                   "resources": [KINDS[kind].plural for kind in hook.kinds], "scope": "*"}],
        "failurePolicy": hook.failure_policy,
        "matchPolicy": "Exact",
        "namespaceSelector": {},
        "objectSelector": {},
        "sideEffects": "None",
        "timeoutSeconds": TIMEOUT_SECONDS,
    }
    if hook.mutating:
        entry["reinvocationPolicy"] = "Never"
    return entry


def webhook_configurations(namespace: str, ca_bundle: str) -> list[Object]:
    kinds = {False: "ValidatingWebhookConfiguration", True: "MutatingWebhookConfiguration"}
    return [document(ADMISSION_API, kinds[hook.mutating], metadata(hook.configuration, component=dep.APISERVER),
                     webhooks=[webhook_entry(hook, namespace, ca_bundle)])
            for hook in WEBHOOKS]


def upload_api_service(namespace: str, ca_bundle: str) -> Object:
    """The aggregated `upload.cdi.kubevirt.io` API, served by `cdi-api`."""
    version, group = dep.UPLOAD_API_SERVICE.split(".", 1)
    meta = metadata(dep.UPLOAD_API_SERVICE, component=dep.APISERVER)
    return document("apiregistration.k8s.io/v1", "APIService", meta,
                    spec={"group": group, "version": version,
                          "service": {"namespace": namespace, "name": dep.APISERVER_SERVICE, "port": SERVICE_PORT},
                          "caBundle": ca_bundle,
                          "groupPriorityMinimum": dep.UPLOAD_API_GROUP_PRIORITY,
                          "versionPriority": dep.UPLOAD_API_VERSION_PRIORITY})
