"""An UploadTokenRequest answered: the pure half of `POST .../uploadtokenrequests`, for both backends.

cdi-apiserver (`cdi.apiserver.server`) calls `answer_token_request` with the namespace of the URL and
its signing key; the embedded store calls it (through `cdi.embedded.uploadtokens`) when a client
creates an UploadTokenRequest, so `cdi image-upload` and virtctl get the same answer from either: the
request echoed back with `status.token`, a PS256 upload token (`cdi.tokens`) for `spec.pvcName` in that
namespace, valid for upstream's 5 minutes. Nothing is stored, and, as upstream's handler, the PVC is not
looked up: the upload proxy checks it when the upload starts.

Where we differ from upstream's handler (a lenient `json.Unmarshal`): the body is decoded like every CDI
kind (`cdi.admission`: strict decoding, the schema), an empty `spec.pvcName` is refused instead of
yielding a token for no claim, and a namespace in the body that differs from the URL's is refused with
the API server's words for it.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from cdi.admission import AdmissionRequest, admit
from cdi.api.meta import UPLOAD_API_VERSION
from cdi.cluster.errors import BadRequest, Invalid
from cdi.cluster.kinds import DEFAULT_KINDS
from cdi.cluster.protocol import Object
from cdi.tokens import DEFAULT_LIFETIME, SigningKey, issue_token, upload_payload

UPLOAD_TOKEN_REQUEST: Final = DEFAULT_KINDS.lookup(UPLOAD_API_VERSION, "UploadTokenRequest")


def _no_lookup(group: str, kind: str, name: str, namespace: str | None) -> Object | None:
    return None  # UploadTokenRequest admission reads no other object


def answer_token_request(request: Object, namespace: str, key: SigningKey, now: float,
                         lifetime: float = DEFAULT_LIFETIME) -> Object:
    """`request` with `status.token` filled; raises `BadRequest` or `Invalid` as the API server would."""
    kind = UPLOAD_TOKEN_REQUEST
    sent_version, sent_kind = request.get("apiVersion"), request.get("kind")
    if sent_kind not in (None, kind.kind) or sent_version not in (None, *kind.api_versions):
        raise BadRequest(f"the body of the request was in an unknown format: expected {kind.kind} in "
                         f"{kind.api_version}, got {sent_kind} in {sent_version}")
    if not namespace:
        raise Invalid(f"{kind.kind} is namespaced: a namespace is required")
    doc = copy.deepcopy(request)
    doc["apiVersion"], doc["kind"] = sent_version or kind.api_version, kind.kind
    meta = doc.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise BadRequest(f"{kind.kind}: metadata must be a mapping")
    if meta.get("namespace") not in (None, "", namespace):
        raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
    meta["namespace"] = namespace
    admit(AdmissionRequest(kind, "CREATE", doc), _no_lookup)
    pvc = _pvc_name(doc)
    if not pvc:
        name = meta.get("name") or meta.get("generateName") or ""
        raise Invalid(f'{kind.kind}.{kind.group} "{name}" is invalid: spec.pvcName: Required value',
                      causes=["spec.pvcName: Required value"])
    doc["status"] = {"token": issue_token(key, upload_payload(namespace, pvc), now, lifetime)}
    return doc


def _pvc_name(doc: Object) -> str:
    spec: Any = doc.get("spec")
    value = spec.get("pvcName") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else ""
