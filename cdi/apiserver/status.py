"""How cdi-apiserver words a failure: `metav1.Status` objects, and JSON bodies decoded at the edge.

Every handler of the aggregated API raises a `cdi.cluster.errors.ApiError`; `status_object` turns it
into the Status the Kubernetes API server would send (`kind: Status`, `status: Failure`, the message,
reason and code, `details` with the group, kind and causes), so clients (`kubectl`, virtctl, our own
`cdi.kube` backend) report it exactly as they report the API server's own refusals. `decode_object`
reads a request body as one JSON object or raises `BadRequest`. The webhooks (`cdi.apiserver.webhooks`)
put the same code, reason and message into an AdmissionResponse instead.
"""

from __future__ import annotations

import json
from typing import Any

from cdi.cluster.errors import ApiError, BadRequest
from cdi.cluster.protocol import Object


def status_object(error: ApiError, *, group: str = "", kind: str = "", name: str = "") -> Object:
    """The `v1` Status the API server answers a failed request with."""
    details: dict[str, Any] = {key: value for key, value in (("name", name), ("group", group), ("kind", kind))
                               if value}
    if len(error.causes) > 1 or error.causes != [error.message]:
        details["causes"] = [{"message": cause} for cause in error.causes]
    status: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": error.message, "reason": error.reason, "code": error.code}
    if details:
        status["details"] = details
    return status


def decode_object(body: bytes, what: str) -> Object:
    """`body` as one JSON object; `BadRequest` naming `what` when it is not."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"the body of the request is not a valid {what}: {e}") from e
    if not isinstance(doc, dict):
        raise BadRequest(f"the body of the request is not a valid {what}: expected a JSON object, "
                         f"got {type(doc).__name__}")
    return doc
