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
    # The stored object is parsed only when needed: to ratchet a problem of the new one, or for the
    # immutability rules of a spec write. A status write of a valid object, the most frequent write by
    # far, parses one object, not two.
    stored = _Stored(request.old_object)
    kind = request.kind
    if new is None:
        fresh = [p for p in new_problems if p not in stored.problems()]
        if fresh:
            raise Invalid(_invalid(request, fresh), causes=fresh)
        return
    unknown = unknown_fields(new)
    if unknown:
        old_unknown = stored.unknown_fields()
        unknown = [path for path in unknown if path not in old_unknown]
    if unknown:
        fields = ", ".join(f'unknown field "{path}"' for path in unknown)
        version = request.object.get("apiVersion", kind.api_version).rpartition("/")[2]
        raise BadRequest(f'{kind.kind} in version "{version}" cannot be handled as a {kind.kind}: '
                         f"strict decoding error: {fields}")
    if request.is_status:
        return
    old = stored.parsed()
    problems = validate(new) if old is None else [p for p in validate_update(old, new) if p]
    if old is not None:
        problems += [p for p in validate(new) if p not in validate(old)]
    if problems:
        webhook = f"{kind.singular}-validate.{kind.group}"
        raise Invalid(f'admission webhook "{webhook}" denied the request: {"; ".join(problems)}', causes=problems)


class _Stored:
    """The request's old object, parsed at the first question about it (None on create)."""

    def __init__(self, doc: Object | None) -> None:
        self._doc = doc
        self._parsed: tuple[ApiObject | None, list[str]] | None = None

    def _parse(self) -> tuple[ApiObject | None, list[str]]:
        if self._parsed is None:
            self._parsed = _parse(self._doc) if self._doc is not None else (None, [])
        return self._parsed

    def parsed(self) -> ApiObject | None:
        return self._parse()[0]

    def problems(self) -> list[str]:
        return self._parse()[1]

    def unknown_fields(self) -> list[str]:
        old = self.parsed()
        return [] if old is None else unknown_fields(old)


def _parse(doc: Object | None) -> tuple[ApiObject | None, list[str]]:
    try:
        return parse_object(doc or {}), []
    except ManifestError as e:
        return None, e.messages


def _invalid(request: AdmissionRequest, problems: list[str]) -> str:
    kind = request.kind
    listed = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
    return f'{kind.kind}.{kind.group} "{request.name}" is invalid: {listed}'
