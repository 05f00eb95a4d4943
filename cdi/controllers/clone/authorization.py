"""Clone tokens as the controllers use them: checked again after admission, extended, carried to the claim.

Admission puts a short-lived clone token (5 minutes) on a DataVolume that clones from another
namespace, once the requesting user proved the right to read there (`cdi.admission.clonesource`).
As upstream's controllers do, the DataVolume controller then checks it and mints the extended token
(10 years) for the DataVolume's uid (`extend_for_datavolume`), and once the target claim exists,
one for the claim's uid (`extend_for_claim`); the clone populator and the host-assisted clone
controllers check the claim's token before they read the other namespace (`claim_authorizer`).
A token copied onto another object fails the uid check. Same-namespace clones need no token.
"""

from __future__ import annotations

from collections.abc import Callable

from cdi.cluster.protocol import Object
from cdi.contracts import annotations as ann
from cdi.controllers.meta import annotations_of, name_of, namespace_of, uid_of
from cdi.tokens import CloneSourceKind, CloneTokens, TokenRejected

NO_KEY = "cross-namespace clones need the clone token key, and this controller has none"


def token_kind(source_kind: str) -> CloneSourceKind:
    return "snapshot" if source_kind == "VolumeSnapshot" else "pvc"


class CloneAuthorization:
    """Checks and extends one controller's clone tokens; `tokens` None refuses every cross-namespace clone."""

    def __init__(self, tokens: CloneTokens | None, now: Callable[[], float]) -> None:
        self._tokens = tokens
        self._now = now

    def extend_for_datavolume(self, dv: Object, source_kind: str, source_namespace: str, source_name: str) -> str:
        """The DataVolume's extended token, from the short-lived one admission gave it; raises `TokenRejected`."""
        token = annotations_of(dv).get(ann.ANN_CLONE_TOKEN)
        if not token:
            raise TokenRejected("the DataVolume carries no clone token: it was not admitted for a cross-namespace "
                                "clone; delete it and create it again")
        return self._require().extend(token, source_kind=token_kind(source_kind), source_namespace=source_namespace,
                                      source_name=source_name, target_namespace=namespace_of(dv),
                                      target_name=name_of(dv), uid=uid_of(dv), now=self._now())

    def extend_for_claim(self, dv: Object, claim: Object, source_kind: str, source_namespace: str,
                         source_name: str) -> str:
        """The target claim's extended token, re-minted from the DataVolume's (same clone, the claim's uid)."""
        token = annotations_of(dv).get(ann.ANN_EXTENDED_CLONE_TOKEN, "")
        return self._require().extend(token, source_kind=token_kind(source_kind), source_namespace=source_namespace,
                                      source_name=source_name, target_namespace=namespace_of(claim),
                                      target_name=name_of(claim), uid=uid_of(claim), now=self._now(),
                                      token_uid=uid_of(dv))

    def check_claim(self, claim: Object, source_kind: str, source_namespace: str, source_name: str) -> str | None:
        """None when `claim` may be filled from the source in `source_namespace`, else why not."""
        if source_namespace == namespace_of(claim):
            return None
        token = annotations_of(claim).get(ann.ANN_EXTENDED_CLONE_TOKEN)
        if not token:
            return "cross-namespace clone is not authorized: the claim carries no extended clone token"
        try:
            self._require().verify(token, source_kind=token_kind(source_kind), source_namespace=source_namespace,
                                   source_name=source_name, target_namespace=namespace_of(claim),
                                   target_name=name_of(claim), uid=uid_of(claim), now=self._now())
        except TokenRejected as e:
            return str(e)
        return None

    def check_clone_request(self, claim: Object) -> str | None:
        """`check_claim` for a host-assisted target, whose source is `k8s.io/CloneRequest: <ns>/<name>`."""
        namespace, _, name = annotations_of(claim).get(ann.ANN_CLONE_REQUEST, "").partition("/")
        return self.check_claim(claim, "PersistentVolumeClaim", namespace, name)

    def _require(self) -> CloneTokens:
        if self._tokens is None:
            raise TokenRejected(NO_KEY)
        return self._tokens
