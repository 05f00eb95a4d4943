"""Admission of CDI's own kinds: strict decoding, the CRD schema, upstream's webhook rules, immutability.

For a create or update of a `cdi.kubevirt.io` (or `upload.cdi.kubevirt.io`) object, in the order the
API server applies them: fields the schema does not know are a `BadRequest` ("strict decoding error"),
schema violations are `Invalid`, and for spec writes (not status) upstream's validating webhook rules
(`cdi.api.validate`) and, on update, its immutability rules (`cdi.api.validate_update`) are `Invalid`
with the webhook's name. Updates ratchet, as Kubernetes' CRD validation does: a problem the stored
object already had does not block a write that leaves it as it was.
"""

from __future__ import annotations

from cdi.admission.request import AdmissionRequest
from cdi.admission.strict import unknown_fields
from cdi.api import ManifestError, parse_object, validate, validate_update
from cdi.api.kinds import KINDS
from cdi.api.meta import ApiObject
from cdi.cluster.errors import BadRequest, Invalid
from cdi.cluster.protocol import Object


def is_cdi_kind(request: AdmissionRequest) -> bool:
    info = KINDS.get(request.kind.kind)
    return info is not None and info.group == request.kind.group


def admit_cdi_kind(request: AdmissionRequest) -> None:
    if not is_cdi_kind(request):
        return
    new, new_problems = _parse(request.object)
    old, old_problems = _parse(request.old_object) if request.old_object is not None else (None, [])
    kind = request.kind
    if new is None:
        fresh = [p for p in new_problems if p not in old_problems]
        if fresh:
            raise Invalid(_invalid(request, fresh), causes=fresh)
        return
    unknown = [path for path in unknown_fields(new) if old is None or path not in unknown_fields(old)]
    if unknown:
        fields = ", ".join(f'unknown field "{path}"' for path in unknown)
        version = request.object.get("apiVersion", kind.api_version).rpartition("/")[2]
        raise BadRequest(f'{kind.kind} in version "{version}" cannot be handled as a {kind.kind}: '
                         f"strict decoding error: {fields}")
    if request.is_status:
        return
    problems = validate(new) if old is None else [p for p in validate_update(old, new) if p]
    if old is not None:
        problems += [p for p in validate(new) if p not in validate(old)]
    if problems:
        webhook = f"{kind.singular}-validate.{kind.group}"
        raise Invalid(f'admission webhook "{webhook}" denied the request: {"; ".join(problems)}', causes=problems)


def _parse(doc: Object | None) -> tuple[ApiObject | None, list[str]]:
    try:
        return parse_object(doc or {}), []
    except ManifestError as e:
        return None, e.messages


def _invalid(request: AdmissionRequest, problems: list[str]) -> str:
    kind = request.kind
    listed = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    return f'{kind.kind}.{kind.group} "{request.name}" is invalid: {listed}'
