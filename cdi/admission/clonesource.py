"""Cross-namespace clone authorization, as pure decisions: which source a DataVolume clones, which
SubjectAccessReviews decide whether its creator may clone it, and how their answers combine.

Upstream's rules (`API/core/v1beta1/authorize_utils.go`, used by the datavolume-mutate webhook): a clone
from the DataVolume's own namespace needs nothing. From another namespace, a PersistentVolumeClaim source
is allowed when the user may `create datavolumes/source` (group cdi.kubevirt.io, named after the source)
there, or else may `create pods` there; a VolumeSnapshot source when the user may `create
datavolumes/source`, or else both `create pods` and `create pvcs` (sic: upstream asks for the resource
"pvcs", which no RBAC rule for persistentvolumeclaims grants). A refusal is `Forbidden` with upstream's
words "User %s has insufficient permissions in clone source namespace %s" (upstream answers 422; a
refusal to authorize reads better as 403, and the message is the same).

`clone_source` resolves the source (through a DataSource for `sourceRef`, one hop of DataSource chain as
the API allows); a missing DataSource or source namespace is refused unless the DataVolume adopts an
existing volume (`storage.prePopulated`, `storage.checkStaticVolume`), which needs no token. The
reviews are asked lazily, in order: `next_check` says which to ask given the answers so far and
`verdict` says when the answers decide. `cdi.admission.clonetoken` drives these synchronously (the
embedded store, where the one administrator may do everything); `cdi.apiserver.webhooks` asks the real
API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cdi.admission.request import Lookup
from cdi.api import ManifestError, parse_object
from cdi.api.datasource import DataSource, DataSourceSource
from cdi.api.datavolume import DataVolume
from cdi.api.meta import CDI_GROUP
from cdi.cluster.errors import Forbidden, Invalid, NotFound
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.tokens import CloneSourceKind

MUTATE_WEBHOOK: Final = "datavolume-mutate.cdi.kubevirt.io"
_ADOPTING = (ann.ANN_PRE_POPULATED, ann.ANN_CHECK_STATIC_VOLUME)


@dataclass(frozen=True)
class CloneSource:
    """The volume a DataVolume clones from another namespace, and the field that names it."""

    kind: CloneSourceKind
    namespace: str
    name: str
    field: str  # "spec.source.pvc", "spec.source.snapshot" or "spec.sourceRef"


@dataclass(frozen=True)
class AccessCheck:
    """One SubjectAccessReview's resource attributes: may the user `verb` this in `namespace`?"""

    namespace: str
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    name: str = ""


@dataclass(frozen=True)
class RequestingUser:
    """Who asks for the write, as the AdmissionReview's userInfo names them."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_user_info(cls, info: Mapping[str, Any]) -> RequestingUser:
        extra = info.get("extra")
        return cls(str(info.get("username") or ""), tuple(str(g) for g in info.get("groups") or ()),
                   str(info.get("uid") or ""),
                   {str(k): tuple(str(v) for v in values or ()) for k, values in extra.items()}
                   if isinstance(extra, dict) else {})


# Either alternative (a tuple of checks that must all be allowed) authorizes the clone.
Alternatives = tuple[tuple[AccessCheck, ...], ...]


def clone_source(dv: Object, lookup: Lookup, *, check_namespace: bool = True) -> CloneSource | None:
    """The source of a DataVolume that clones from another namespace; None when no token is needed (not a
    clone, the same namespace, an invalid object the validating webhook refuses, or adoption). `Invalid`
    when the DataSource or, with `check_namespace`, the source namespace does not exist."""
    try:
        parsed = parse_object(dv)
    except ManifestError:
        return None
    if not isinstance(parsed, DataVolume):
        return None
    namespace = parsed.metadata.namespace or ""
    adopting = any(parsed.metadata.annotations.get(key) == "true" for key in _ADOPTING)
    source: CloneSource | None = None
    try:
        source = _source(parsed, namespace, lookup)
        if source is None or source.namespace == namespace:
            return None
        if check_namespace and lookup("", "Namespace", source.namespace, None) is None:
            raise NotFound(f'namespaces "{source.namespace}" not found')
    except NotFound as e:
        if adopting:
            return None
        problem = f"{source.field if source else 'spec.sourceRef'}: {e.message}"
        raise Invalid(f'admission webhook "{MUTATE_WEBHOOK}" denied the request: {problem}',
                      causes=[problem]) from e
    return source


def _source(dv: DataVolume, namespace: str, lookup: Lookup) -> CloneSource | None:
    spec = dv.spec
    if spec.source is not None and spec.source.pvc is not None:
        return CloneSource("pvc", spec.source.pvc.namespace or namespace, spec.source.pvc.name, "spec.source.pvc")
    if spec.source is not None and spec.source.snapshot is not None:
        snapshot = spec.source.snapshot
        return CloneSource("snapshot", snapshot.namespace or namespace, snapshot.name, "spec.source.snapshot")
    if spec.source_ref is None or spec.source_ref.kind != "DataSource":
        return None
    ref_namespace = spec.source_ref.namespace or namespace
    found = _data_source(lookup, ref_namespace, spec.source_ref.name).spec.source
    if found.data_source is not None:  # a chain is at most one hop long
        ref_namespace = found.data_source.namespace or ref_namespace
        found = _data_source(lookup, ref_namespace, found.data_source.name).spec.source
    return _from_data_source(found, namespace)


def _data_source(lookup: Lookup, namespace: str, name: str) -> DataSource:
    doc = lookup(CDI_GROUP, "DataSource", name, namespace)
    try:
        parsed = parse_object(doc) if doc is not None else None
    except ManifestError:
        parsed = None
    if not isinstance(parsed, DataSource):
        raise NotFound(f'datasources.{CDI_GROUP} "{name}" not found')
    return parsed


def _from_data_source(source: DataSourceSource, namespace: str) -> CloneSource | None:
    if source.pvc is not None:
        return CloneSource("pvc", source.pvc.namespace or namespace, source.pvc.name, "spec.sourceRef")
    if source.snapshot is not None:
        return CloneSource("snapshot", source.snapshot.namespace or namespace, source.snapshot.name,
                           "spec.sourceRef")
    return None


def access_alternatives(source: CloneSource) -> Alternatives:
    """What may authorize cloning `source`: `create datavolumes/source` on it, else the worker-pod fallback."""
    ns = source.namespace
    clone_source_grant = AccessCheck(ns, "create", "datavolumes", CDI_GROUP, "source", source.name)
    pods = AccessCheck(ns, "create", "pods")
    if source.kind == "pvc":
        return ((clone_source_grant,), (pods,))
    return ((clone_source_grant,), (pods, AccessCheck(ns, "create", "pvcs")))  # sic, as upstream


def verdict(alternatives: Alternatives, answers: Mapping[AccessCheck, bool]) -> bool | None:
    """True once an alternative is wholly allowed, False once every one has a denial, else None (ask more)."""
    if any(all(answers.get(check) is True for check in checks) for checks in alternatives):
        return True
    if all(any(answers.get(check) is False for check in checks) for checks in alternatives):
        return False
    return None


def next_check(alternatives: Alternatives, answers: Mapping[AccessCheck, bool]) -> AccessCheck | None:
    """The next review to ask, in upstream's order; None when the answers already decide."""
    if verdict(alternatives, answers) is not None:
        return None
    for checks in alternatives:
        if any(answers.get(check) is False for check in checks):
            continue
        return next(check for check in checks if check not in answers)
    return None


def access_review(user: RequestingUser, check: AccessCheck) -> Object:
    """The SubjectAccessReview asking whether `user` may do `check`."""
    attributes = {"namespace": check.namespace, "verb": check.verb, "group": check.group,
                  "resource": check.resource}
    attributes.update({key: value for key, value in (("subresource", check.subresource), ("name", check.name))
                       if value})
    spec: Object = {"user": user.name, "groups": list(user.groups), "resourceAttributes": attributes}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def review_allowed(answer: Object) -> bool:
    status = answer.get("status") or {}
    return status.get("allowed") is True and not status.get("denied")


def insufficient_permissions(user: str, source: CloneSource) -> Forbidden:
    message = f"User {user} has insufficient permissions in clone source namespace {source.namespace}"
    return Forbidden(f'admission webhook "{MUTATE_WEBHOOK}" denied the request: {message}', causes=[message])

