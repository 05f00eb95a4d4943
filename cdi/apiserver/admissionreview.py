"""AdmissionReview in, AdmissionReview out: the pure translation behind cdi-apiserver's webhooks.

The API server posts an `admission.k8s.io/v1` AdmissionReview for every write its webhook configurations
send us (`cdi.apiserver.webhooks` serves the paths of `cdi.contracts.deployment.WEBHOOK_PATHS`).
`decode_review` reads it strictly — anything that is not a review with a request and its uid is a
`BadRequest`, answered with HTTP 400 as upstream's handler does — and `admission_request` turns it into
the `cdi.admission.AdmissionRequest` the pure handlers take (the same ones the embedded store runs on
every write); DELETE and CONNECT, and kinds no backend of ours knows, need no handler. The verdict goes
back with `allowed` (optionally with a JSONPatch) or `denied`: the error's code and reason, its message
without the `admission webhook "…" denied the request: ` prefix the embedded store words it with —
the API server puts that prefix in front itself — and each cause in `details.causes`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cdi.admission import AdmissionRequest
from cdi.cluster.errors import ApiError, BadRequest
from cdi.cluster.kinds import DEFAULT_KINDS, KindRegistry
from cdi.cluster.protocol import Object

API_VERSIONS: Final = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
_DENIED_PREFIX = re.compile(r'^admission webhook "[^"]*" denied the request: ')


@dataclass(frozen=True)
class ReviewRequest:
    """The parts of an AdmissionReview's `request` the handlers need."""

    api_version: str  # of the review: the answer goes back in the same one
    uid: str
    group: str
    version: str
    kind: str
    operation: str  # CREATE, UPDATE, DELETE or CONNECT
    name: str = ""
    namespace: str = ""
    sub_resource: str = ""
    object: Object | None = None
    old_object: Object | None = None
    user: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_version_of_kind(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def decode_review(doc: Object) -> ReviewRequest:
    """The review's request; `BadRequest` when `doc` is not an AdmissionReview we can answer."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version not in API_VERSIONS or kind != "AdmissionReview":
        raise BadRequest(f"expected an AdmissionReview in {' or '.join(API_VERSIONS)}, got {kind} in {api_version}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadRequest("the AdmissionReview has no request")
    uid, kind_of = request.get("uid"), request.get("kind")
    if not isinstance(uid, str) or not uid:
        raise BadRequest("the AdmissionReview's request has no uid")
    if not isinstance(kind_of, dict) or not all(isinstance(kind_of.get(k), str) for k in ("group", "version", "kind")):
        raise BadRequest("the AdmissionReview's request.kind must give group, version and kind")
    objects = [request.get(name) for name in ("object", "oldObject")]
    if any(obj is not None and not isinstance(obj, dict) for obj in objects):
        raise BadRequest("the AdmissionReview's object and oldObject must be objects")
    user = request.get("userInfo")
    return ReviewRequest(
        api_version=str(api_version), uid=uid, group=kind_of["group"], version=kind_of["version"],
        kind=kind_of["kind"], operation=str(request.get("operation") or ""), name=str(request.get("name") or ""),
        namespace=str(request.get("namespace") or ""), sub_resource=str(request.get("subResource") or ""),
        object=objects[0], old_object=objects[1], user=user if isinstance(user, dict) else {})


def admission_request(review: ReviewRequest, kinds: KindRegistry = DEFAULT_KINDS) -> AdmissionRequest | None:
    """What `cdi.admission.admit` judges; None when nothing of ours judges this request."""
    if review.operation not in ("CREATE", "UPDATE") or review.object is None:
        return None
    kind = kinds.in_group(review.group, review.kind)
    if kind is None:
        return None
    obj = copy.deepcopy(review.object)
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise BadRequest("the AdmissionReview's object has a metadata that is not an object")
    if review.name and not meta.get("name"):
        meta["name"] = review.name
    if review.operation == "UPDATE" and review.old_object is None:
        raise BadRequest("an UPDATE AdmissionReview must carry the oldObject")
    return AdmissionRequest(kind, "CREATE" if review.operation == "CREATE" else "UPDATE", obj,
                            review.old_object if review.operation == "UPDATE" else None, review.sub_resource)


def allowed(review: ReviewRequest, patch: list[Object] | None = None) -> Object:
    """The answer that lets the write through, applying `patch` (RFC 6902) when there is one."""
    response: Object = {"uid": review.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _review(review.api_version, response)


def denied(review: ReviewRequest, error: ApiError) -> Object:
    """The answer that refuses the write with `error`'s code, reason, message and causes."""
    status: Object = {"status": "Failure", "message": webhook_message(error), "reason": error.reason,
                      "code": error.code}
    if error.causes and error.causes != [error.message]:
        status["details"] = {"causes": [{"message": cause} for cause in error.causes]}
    return _review(review.api_version, {"uid": review.uid, "allowed": False, "status": status})


def webhook_message(error: ApiError) -> str:
    """The message as a webhook gives it: the API server prefixes `admission webhook "<name>" denied …`."""
    return _DENIED_PREFIX.sub("", error.message, count=1)


def _review(api_version: str, response: Object) -> Object:
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
