"""The datavolume-mutate step: a DataVolume created to clone from another namespace gets a clone token.

On CREATE of a DataVolume (never on update, as upstream) whose source is in another namespace
(`cdi.admission.clonesource.clone_source`), the requesting user's permissions there are checked and,
if they suffice, the DataVolume is stored with annotation `cdi.kubevirt.io/storage.clone.token`: a
short-lived token (`cdi.tokens.CloneTokens.issue`) naming the source and the target, which the clone
controller checks before it touches the source and then exchanges for the extended token.

`CloneTokenMutation` is the synchronous handler the embedded store runs inside its write transaction
(`cdi.embedded.store`, `mutation=`): embedded mode has one administrator, so its authorizer allows
everything (`allow_everything`), but the token is minted all the same, so the controller's check is the
same on both backends. On a cluster, `cdi.apiserver.webhooks` does the same steps asynchronously, asking
the API server, and answers with `clone_token_patch`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from cdi.admission.clonesource import (
    MUTATE_WEBHOOK,
    AccessCheck,
    CloneSource,
    access_alternatives,
    clone_source,
    insufficient_permissions,
    next_check,
    verdict,
)
from cdi.admission.request import AdmissionRequest, Lookup
from cdi.cluster.errors import Invalid
from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.tokens import CloneTokens

Authorize = Callable[[AccessCheck], bool]
EMBEDDED_USER = "admin"  # embedded mode's one administrator (named only in a refusal, which it never gets)


def allow_everything(check: AccessCheck) -> bool:
    return True


def is_datavolume_create(request: AdmissionRequest) -> bool:
    return ((request.kind.group, request.kind.kind, request.operation) == ("cdi.kubevirt.io", "DataVolume", "CREATE")
            and not request.is_status)


def clone_target(dv: Object, namespace: str = "", name: str = "") -> tuple[str, str]:
    """The DataVolume's namespace and name (the request's when the object lacks them); `Invalid` when it has
    no name yet: with generateName the API server names it after admission, and the token must name it."""
    meta = dv.get("metadata") or {}
    target_namespace, target_name = str(meta.get("namespace") or namespace), str(meta.get("name") or name)
    if not target_name:
        problem = ("metadata.name: Required value: a DataVolume that clones from another namespace needs a name "
                   "(generateName is not supported): its clone token names the target")
        raise Invalid(f'admission webhook "{MUTATE_WEBHOOK}" denied the request: {problem}', causes=[problem])
    return target_namespace, target_name


def issue_for(tokens: CloneTokens, source: CloneSource, target: tuple[str, str], now: float) -> str:
    return tokens.issue(source_kind=source.kind, source_namespace=source.namespace, source_name=source.name,
                        target_namespace=target[0], target_name=target[1], now=now)


def with_clone_token(dv: Object, token: str) -> Object:
    changed = copy.deepcopy(dv)
    meta = changed.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), ann.ANN_CLONE_TOKEN: token}
    return changed


def clone_token_patch(dv: Object, token: str) -> list[Object]:
    """The JSONPatch (RFC 6902) that adds (or replaces) the token annotation on `dv` as the API server sent it."""
    if not (dv.get("metadata") or {}).get("annotations"):
        return [{"op": "add", "path": "/metadata/annotations", "value": {ann.ANN_CLONE_TOKEN: token}}]
    key = ann.ANN_CLONE_TOKEN.replace("~", "~0").replace("/", "~1")
    return [{"op": "add", "path": f"/metadata/annotations/{key}", "value": token}]


class CloneTokenMutation:
    """A `cdi.admission.Mutate` for the embedded store: `authorize` answers each access check (embedded: yes),
    `clock` gives the time tokens are issued at (seconds since the epoch)."""

    def __init__(self, tokens: CloneTokens, *, clock: Callable[[], float] = time.time,
                 authorize: Authorize = allow_everything, user: str = EMBEDDED_USER,
                 check_namespace: bool = False) -> None:
        self._tokens, self._clock, self._authorize, self._user = tokens, clock, authorize, user
        self._check_namespace = check_namespace  # the embedded store's namespaces exist without objects

    def __call__(self, request: AdmissionRequest, lookup: Lookup) -> Object | None:
        if not is_datavolume_create(request):
            return None
        source = clone_source(request.object, lookup, check_namespace=self._check_namespace)
        if source is None:
            return None
        alternatives, answers = access_alternatives(source), dict[AccessCheck, bool]()
        while (check := next_check(alternatives, answers)) is not None:
            answers[check] = self._authorize(check)
        if not verdict(alternatives, answers):
            raise insufficient_permissions(self._user, source)
        token = issue_for(self._tokens, source, clone_target(request.object), self._clock())
        return with_clone_token(request.object, token)
