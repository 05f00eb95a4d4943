"""The embedded store's answers to create-only review kinds, as a real API server gives them.

Embedded mode has one administrator and no service-account tokens, so a SubjectAccessReview is always
allowed (the reason says why) and a TokenReview never authenticates anyone. On a cluster, the API
server decides both; callers use the same `create` on the `Cluster` seam either way. UploadTokenRequest
needs the control plane's signing key, so it is answered only when the opener of the store passes
`cdi.embedded.uploadtokens.upload_token_reviews` (as `cdi serve` and the CLI do).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from cdi.cluster.protocol import Object

# A create-only kind's answer: the request in, the filled object (with status) out; nothing is stored.
Review = Callable[[Object], Object]

EMBEDDED_ALLOWED = "embedded mode: the one administrator of this control plane may do everything"


def subject_access_review(request: Object) -> Object:
    answer = copy.deepcopy(request)
    answer["status"] = {"allowed": True, "reason": EMBEDDED_ALLOWED}
    return answer


def token_review(request: Object) -> Object:
    answer = copy.deepcopy(request)
    answer["status"] = {"authenticated": False,
                        "error": "the embedded control plane issues no service-account tokens"}
    return answer


DEFAULT_REVIEWS: Mapping[tuple[str, str], Review] = {
    ("authorization.k8s.io", "SubjectAccessReview"): subject_access_review,
    ("authentication.k8s.io", "TokenReview"): token_review,
}
