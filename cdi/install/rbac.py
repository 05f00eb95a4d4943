"""Who may do what: the service accounts of CDI's components, their roles, and the roles users bind.

Least privilege per component, each rule granted because a module does it (the comment names it):

* the controller (`cdi controller`, service account `cdi-sa`) reconciles DataVolumes, DataSources,
  DataImportCrons, StorageProfiles, CDIConfig, claims naming CDI's volume populators and the
  not-yet-supported kinds; creates claims, worker pods, their Services and TLS Secrets, snapshots and
  VolumeCloneSources, deletes the temporary ones, hands populated PersistentVolumes to their claims
  (claimRef patch; it never creates or deletes a PV), records Events, and takes its leader Lease. It
  keeps its own Secrets in the install namespace (the upload CA and the token key ring,
  `cdi.controllers.upload.credentials`; the clone token signing key `cdi-api-signing-key`,
  `cdi.cli.controller`); across namespaces it creates and deletes the per-transfer Secrets it owns and
  gets single Secrets by name (a DataImportCron's `secretRef`; a host-assisted clone's own client
  Secret), but may never list or watch them. Every kind it reads through the manager's informer caches
  needs get, list and watch cluster-wide.
* the API server (`cdi apiserver`, `cdi-apiserver`) authenticates its callers by the front-proxy CA in
  `kube-system/extension-apiserver-authentication` and authorizes them with SubjectAccessReviews
  (`system:auth-delegator`, as every aggregated API server), keeps the token signing key in its
  namespace, and, to authorize a cross-namespace clone, reads the DataSource a DataVolume refers to and
  the source Namespace.
* the upload proxy (`cdi-uploadproxy`, `cdi-uploadproxy`) only reads the claim, pod and Service
  behind an upload (upstream's proxy reads the claim; its certificates come as volumes).

Users get upstream's aggregated roles (`cdi.kubevirt.io:admin`/`:edit`/`:view` join the built-in
admin/edit/view roles through their aggregate-to labels), `cdi.kubevirt.io:clone-sourcer` to bind
in a clone's source namespace, and `cdi.kubevirt.io:config-reader`, bound to every authenticated user.
The operator (`cdi operator`, `cdi-operator`) gets what applying and removing the whole install takes
(`operator_rbac`, shipped by `cdi.install.operatorbundle`, not by `rbac`). Pure: `rbac(namespace)` returns the
documents.
"""

from __future__ import annotations

import copy

from cdi.api.kinds import KINDS
from cdi.api.meta import CDI_GROUP, UPLOAD_GROUP
from cdi.contracts import deployment as dep
from cdi.install.objects import RBAC_API, RBAC_GROUP, Object, document, metadata

CONTROLLER_ROLE = "cdi"  # upstream's ClusterRole for cdi-sa, bound by a binding named after the account
AUTH_DELEGATOR = "system:auth-delegator"
AUTH_READER_ROLE = "extension-apiserver-authentication-reader"  # built-in Role in kube-system
AUTH_NAMESPACE = "kube-system"
AGGREGATE_LABEL = "rbac.authorization.k8s.io/aggregate-to-{}"
AUTHENTICATED = "system:authenticated"
READ = ("get", "list", "watch")
CORE, STORAGE, COORDINATION, SNAPSHOT = "", "storage.k8s.io", "coordination.k8s.io", "snapshot.storage.k8s.io"


def plural(kind: str) -> str:
    return KINDS[kind].plural


def rule(group: str, resources: tuple[str, ...] | list[str], verbs: tuple[str, ...] | list[str]) -> Object:
    return {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}


def _cdi(*kinds: str, sub: str = "") -> list[str]:
    return [plural(kind) + (f"/{sub}" if sub else "") for kind in kinds]


CONTROLLER_CLUSTER_RULES: tuple[Object, ...] = (
    # cdi.cluster.events (read back through the manager's cache to count repeats); populators.controller lists
    # a claim's events (field selector) to repeat PVC′'s on the target.
    rule(CORE, ["events"], (*READ, "create", "patch")),
    # datavolume.controller and clone.datavolume create the claim; workerpod annotates and labels it and makes
    # scratch claims; clone.populator makes temporary claims in the source namespace and deletes them when
    # done; populators.controller creates PVC′ and deletes it once its volume is handed over; dataimportcron
    # deletes outdated imports; hostclone.controller sets its finalizer with an update (not a patch).
    rule(CORE, ["persistentvolumeclaims"], (*READ, "create", "patch", "update", "delete")),
    # clone.populator's Rebind and populators.controller hand a filled volume to the target (its claimRef);
    # clone.facts reads a source claim's volume for its CSI driver. Never created or deleted (upstream may).
    rule(CORE, ["persistentvolumes"], (*READ, "patch")),
    # importpod / upload / hostclone create worker pods (and delete them when done); workerpod labels them;
    # clone.populator deletes its temporary pods.
    rule(CORE, ["pods"], (*READ, "create", "delete", "patch")),
    # upload.controller: the upload server's Service and TLS Secret; hostclone.controller: the source pod's
    # client-certificate Secret. Both deleted when the transfer is done.
    rule(CORE, ["services", "secrets"], ["create", "delete"]),
    # (upload.rotator renews a live upload server's TLS Secret by deleting and creating it: no update here.)
    # Secrets read in users' namespaces, one get each (never listed or watched, so never all of them):
    # dataimportcron.targets reads the credentials a cron's `secretRef` names, and hostclone.controller looks
    # whether its source pod's Secret exists yet (it could create and delete blindly instead).
    rule(CORE, ["secrets"], ["get"]),
    # dataimportcron.targets: the CA bundle a cron's `certConfigMap` names (one get, past the cache).
    rule(CORE, ["configmaps"], ["get"]),
    # Owner references with blockOwnerDeletion (claim → DataVolume, pod → claim, scratch claim → pod, PVC′ →
    # target, VolumeCloneSource → DataVolume) need this where the OwnerReferencesPermissionEnforcement
    # admission plugin runs (OpenShift).
    rule(CORE, ["persistentvolumeclaims/finalizers", "pods/finalizers"], ["update"]),
    rule(CDI_GROUP, _cdi("DataVolume", sub="finalizers"), ["update"]),
    # storageprofile / cdiconfig / datavolume render claims from the classes; clone.datavolume hands a clone to
    # the clone populator only when a CSIDriver names the target class's provisioner.
    rule(STORAGE, ["storageclasses", "csidrivers"], READ),
    # clone.populator snapshots the source (and deletes the snapshot when done); dataimportcron keeps imports
    # as snapshots (touches, deletes outdated ones). Contents and classes: clone.facts, dataimportcron.observe.
    rule(SNAPSHOT, ["volumesnapshots"], (*READ, "create", "patch", "delete")),
    rule(SNAPSHOT, ["volumesnapshotcontents", "volumesnapshotclasses"], READ),
    # datavolume controllers; clone.datavolume adds its finalizer and cloneType; dataimportcron creates the
    # imports and deletes outdated or failed ones.
    rule(CDI_GROUP, _cdi("DataVolume"), (*READ, "create", "patch", "delete")),
    rule(CDI_GROUP, _cdi("DataVolume", sub="status"), ["patch"]),
    rule(CDI_GROUP, _cdi("StorageProfile"), (*READ, "create", "delete")),
    rule(CDI_GROUP, _cdi("StorageProfile", sub="status"), ["update"]),
    rule(CDI_GROUP, _cdi("CDIConfig"), (*READ, "create", "update")),
    # datasource: labels and status (written with the object: no status subresource, as upstream);
    # dataimportcron creates its managed DataSource, points it at each import, deletes it on clean-up.
    rule(CDI_GROUP, _cdi("DataSource"), (*READ, "create", "patch", "delete")),
    # dataimportcron: its finalizer, annotations and status (no status subresource).
    rule(CDI_GROUP, _cdi("DataImportCron"), (*READ, "patch")),
    # clone.datavolume creates a clone's VolumeCloneSource (in the source namespace) and deletes it when done;
    # clone.populator reads it, populators.controller the import and upload sources.
    rule(CDI_GROUP, _cdi("VolumeCloneSource"), (*READ, "create", "delete")),
    rule(CDI_GROUP, _cdi("VolumeImportSource", "VolumeUploadSource"), READ),
    # notsupported reports in their status (CDI's has no subresource); clone.facts reads the CDI resource's
    # cloneStrategyOverride.
    rule(CDI_GROUP, _cdi("ObjectTransfer", "CDI"), READ),
    rule(CDI_GROUP, _cdi("ObjectTransfer", sub="status"), ["patch"]),
    rule(CDI_GROUP, _cdi("CDI"), ["patch"]),
)
CONTROLLER_NAMESPACE_RULES: tuple[Object, ...] = (
    # cdi.runtime.lease: the leader Lease.
    rule(COORDINATION, ["leases"], ["get", "create", "update"]),
    # upload.credentials: the upload-server CA and the token key ring (created through the cluster rule);
    # cli.controller: cdi-api-signing-key, the key clone tokens are checked and extended with.
    rule(CORE, ["secrets"], ["get", "update"]),
    # upload.rotator: the upload-server CA bundle a cluster's upload proxy mounts.
    rule(CORE, ["configmaps"], ["get", "update"]),
)
APISERVER_CLUSTER_RULES: tuple[Object, ...] = (
    # cdi.apiserver.server: may the caller create uploadtokenrequests here? (TokenReview, should it ever
    # accept tokens, comes with system:auth-delegator, bound beside this role as aggregated servers do.)
    rule("authorization.k8s.io", ["subjectaccessreviews"], ["create"]),
    # cdi.admission.clonesource (datavolume-mutate): the DataSource of a sourceRef, the source Namespace.
    rule(CDI_GROUP, _cdi("DataSource"), ["get"]),
    rule(CORE, ["namespaces"], ["get"]),
)
APISERVER_NAMESPACE_RULES: tuple[Object, ...] = (
    # cdi.apiserver.signingkey: the token signing key (cdi-api-signing-key), read, or created on first start.
    rule(CORE, ["secrets"], ["get", "create"]),
)
UPLOADPROXY_CLUSTER_RULES: tuple[Object, ...] = (
    # Resolving an upload: the claim, and the upload server's pod and Service.
    rule(CORE, ["persistentvolumeclaims", "pods", "services"], ["get"]),
)

_USER_KINDS = ("DataVolume", "DataImportCron", "DataSource", "VolumeImportSource", "VolumeUploadSource",
               "VolumeCloneSource")
_VIEW_KINDS = ("CDIConfig", "DataImportCron", "DataSource", "DataVolume", "ObjectTransfer", "StorageProfile",
               "VolumeImportSource", "VolumeUploadSource", "VolumeCloneSource")
CLONE_SOURCE_RULE = rule(CDI_GROUP, _cdi("DataVolume", sub="source"), ["create"])
ADMIN_RULES: tuple[Object, ...] = (
    rule(CDI_GROUP, _cdi(*_USER_KINDS), ["*"]),
    CLONE_SOURCE_RULE,
    rule(UPLOAD_GROUP, _cdi("UploadTokenRequest"), ["*"]),
)
VIEW_RULES: tuple[Object, ...] = (rule(CDI_GROUP, _cdi(*_VIEW_KINDS), READ), CLONE_SOURCE_RULE)
CONFIG_READER_RULES: tuple[Object, ...] = (rule(CDI_GROUP, _cdi("CDIConfig", "StorageProfile"), READ),)


# The operator (`cdi operator`, service account `cdi-operator`, `cdi.operator`): it applies everything
# `render_all` renders, so it may write each of those kinds; RBAC objects need `escalate` and `bind` because the
# roles it installs grant what the operator itself does not hold (Kubernetes' escalation check).
OPERATOR_ROLE = "cdi-operator"
_WRITE = (*READ, "create", "update", "patch", "delete")
OPERATOR_CLUSTER_RULES: tuple[Object, ...] = (
    # reconciler: the CR (finalizer, status, config authority), CDIConfig's spec; RemoveWorkloads deletes
    # DataVolumes; the webhook-less uninstall guard lists them.
    rule(CDI_GROUP, _cdi("CDI"), (*READ, "update", "patch")),
    rule(CDI_GROUP, _cdi("CDI", sub="finalizers"), ["update"]),
    rule(CDI_GROUP, _cdi("CDIConfig"), (*READ, "create", "update", "patch")),
    rule(CDI_GROUP, _cdi("DataVolume"), (*READ, "delete")),
    # reconciler: the worker pods and Services removed on uninstall; events about the CR.
    rule(CORE, ["pods", "services"], (*READ, "delete")),
    rule(CORE, ["events"], (*READ, "create", "patch")),
    # manifests: the install's objects, applied and (stale ones) deleted; listed cluster-wide by label.
    rule(CORE, ["serviceaccounts", "configmaps", "secrets", "services"], _WRITE),
    rule("apps", ["deployments"], _WRITE),
    rule("apiextensions.k8s.io", ["customresourcedefinitions"], _WRITE),
    rule(RBAC_GROUP, ["clusterroles", "clusterrolebindings", "roles", "rolebindings"], (*_WRITE, "escalate", "bind")),
    rule("admissionregistration.k8s.io", ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
         _WRITE),
    rule("apiregistration.k8s.io", ["apiservices"], _WRITE),
    rule("monitoring.coreos.com", ["prometheusrules", "servicemonitors"], _WRITE),
)
OPERATOR_NAMESPACE_RULES: tuple[Object, ...] = (
    # cli.operator: the leader Lease.
    rule(COORDINATION, ["leases"], ["get", "create", "update"]),
)


def service_account(name: str, namespace: str, component: str) -> Object:
    return document("v1", "ServiceAccount", metadata(name, namespace, component=component))


def cluster_role(name: str, rules: tuple[Object, ...], *, component: str | None = None,
                 extra_labels: dict[str, str] | None = None) -> Object:
    return document(RBAC_API, "ClusterRole", metadata(name, component=component, extra_labels=extra_labels),
                    rules=copy.deepcopy(list(rules)))


def role(name: str, namespace: str, rules: tuple[Object, ...], component: str) -> Object:
    return document(RBAC_API, "Role", metadata(name, namespace, component=component), rules=copy.deepcopy(list(rules)))


def _account(name: str, namespace: str) -> Object:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _role_ref(kind: str, name: str) -> Object:
    return {"apiGroup": RBAC_GROUP, "kind": kind, "name": name}


def cluster_binding(name: str, role_name: str, subjects: list[Object], component: str | None = None) -> Object:
    return document(RBAC_API, "ClusterRoleBinding", metadata(name, component=component),
                    roleRef=_role_ref("ClusterRole", role_name), subjects=subjects)


def binding(name: str, namespace: str, role_name: str, subjects: list[Object], component: str) -> Object:
    return document(RBAC_API, "RoleBinding", metadata(name, namespace, component=component),
                    roleRef=_role_ref("Role", role_name), subjects=subjects)


def component_rbac(namespace: str) -> list[Object]:
    """Service accounts, roles and bindings of the controller, the API server and the upload proxy."""
    controller, apiserver, proxy = (_account(dep.CONTROLLER_SA, namespace), _account(dep.APISERVER_SA, namespace),
                                    _account(dep.UPLOADPROXY_SA, namespace))
    return [
        service_account(dep.CONTROLLER_SA, namespace, dep.CONTROLLER),
        service_account(dep.APISERVER_SA, namespace, dep.APISERVER),
        service_account(dep.UPLOADPROXY_SA, namespace, dep.UPLOADPROXY),
        cluster_role(CONTROLLER_ROLE, CONTROLLER_CLUSTER_RULES, component=dep.CONTROLLER),
        cluster_binding(dep.CONTROLLER_SA, CONTROLLER_ROLE, [controller], dep.CONTROLLER),
        role(CONTROLLER_ROLE, namespace, CONTROLLER_NAMESPACE_RULES, dep.CONTROLLER),
        binding(dep.CONTROLLER_SA, namespace, CONTROLLER_ROLE, [controller], dep.CONTROLLER),
        cluster_role(dep.APISERVER, APISERVER_CLUSTER_RULES, component=dep.APISERVER),
        cluster_binding(dep.APISERVER, dep.APISERVER, [apiserver], dep.APISERVER),
        cluster_binding(f"{dep.APISERVER}-auth-delegator", AUTH_DELEGATOR, [apiserver], dep.APISERVER),
        binding(f"{dep.APISERVER}-auth-reader", AUTH_NAMESPACE, AUTH_READER_ROLE, [apiserver], dep.APISERVER),
        role(dep.APISERVER, namespace, APISERVER_NAMESPACE_RULES, dep.APISERVER),
        binding(dep.APISERVER, namespace, dep.APISERVER, [apiserver], dep.APISERVER),
        cluster_role(dep.UPLOADPROXY, UPLOADPROXY_CLUSTER_RULES, component=dep.UPLOADPROXY),
        cluster_binding(dep.UPLOADPROXY, dep.UPLOADPROXY, [proxy], dep.UPLOADPROXY),
    ]


def user_rbac() -> list[Object]:
    """Upstream's roles for users: aggregated admin/edit/view, clone-sourcer, config-reader (bound to all)."""
    admin, edit, view = dep.AGGREGATE_ROLES
    aggregated = [(admin, "admin", ADMIN_RULES), (edit, "edit", ADMIN_RULES), (view, "view", VIEW_RULES)]
    return [
        *(cluster_role(name, rules, extra_labels={AGGREGATE_LABEL.format(to): "true"})
          for name, to, rules in aggregated),
        cluster_role(dep.CLONE_SOURCER_ROLE, (CLONE_SOURCE_RULE,)),
        cluster_role(dep.CONFIG_READER_ROLE, CONFIG_READER_RULES),
        cluster_binding(dep.CONFIG_READER_ROLE, dep.CONFIG_READER_ROLE,
                        [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": AUTHENTICATED}]),
    ]


def rbac(namespace: str) -> list[Object]:
    return [*component_rbac(namespace), *user_rbac()]


def operator_rbac(namespace: str) -> list[Object]:
    """The operator's service account and roles (`cdi.install.operatorbundle` ships them with its Deployment)."""
    account = _account(OPERATOR_ROLE, namespace)
    return [service_account(OPERATOR_ROLE, namespace, OPERATOR_ROLE),
            cluster_role(OPERATOR_ROLE, OPERATOR_CLUSTER_RULES, component=OPERATOR_ROLE),
            cluster_binding(OPERATOR_ROLE, OPERATOR_ROLE, [account], OPERATOR_ROLE),
            role(OPERATOR_ROLE, namespace, OPERATOR_NAMESPACE_RULES, OPERATOR_ROLE),
            binding(OPERATOR_ROLE, namespace, OPERATOR_ROLE, [account], OPERATOR_ROLE)]
