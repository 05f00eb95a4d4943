"""Names and digests a DataImportCron derives, pure.

An import is named as upstream's `createDvName` names it: `<managedDataSource>-<the 12 characters
after "sha256:" or "uid:">`, shortened as openshift's `naming.GetName` does when too long. Any other
digest prefix is refused (`DigestError`, reason `InvalidDigest`).

HTTP(S) and S3 sources have no content digest to poll, only validators (ETag, Last-Modified, an S3
versionId); `validator_digest` hashes the validator into a `sha256:<hex>` token so that the same
naming, status and `sourceDesiredDigest` machinery serves them. Used by `plan` and `pollers`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from cdi.contracts.upload_protocol import shortened_name

SHA256_PREFIX: Final = "sha256:"
UID_PREFIX: Final = "uid:"
SUFFIX_LENGTH: Final = 12
MAX_NAME: Final = 253
_REGISTRY_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class DigestError(ValueError):
    """A `sourceDesiredDigest` that cannot name an import."""

    reason = "InvalidDigest"


def import_name(managed_data_source: str, digest: str) -> str:
    """The DataVolume (and PVC, and snapshot) name of the import of `digest`."""
    for prefix in (SHA256_PREFIX, UID_PREFIX):
        if digest.startswith(prefix):
            suffix = digest[len(prefix):len(prefix) + SUFFIX_LENGTH]
            if len(suffix) < SUFFIX_LENGTH:
                raise DigestError(f"Digest {digest!r} is too short")
            return shortened_name(managed_data_source, suffix.lower(), MAX_NAME)
    raise DigestError(f"Digest {digest!r} has no supported prefix (sha256: or uid:)")


def validator_digest(url: str, validator: str) -> str:
    """`sha256:<hex>` of a source's URL and its change validator (e.g. `etag:"abc"`)."""
    return SHA256_PREFIX + hashlib.sha256(f"{url}\n{validator}".encode()).hexdigest()


def is_registry_digest(text: str) -> bool:
    return bool(_REGISTRY_DIGEST.match(text))


def untagged_url(url: str, digest: str) -> str:
    """`docker://host/repo:tag` pinned to `digest`: `docker://host/repo@sha256:...` (the tag dropped,
    as upstream's `untagDigestedDockerURL` does)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    name = rest.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{scheme}://{name}@{digest}" if sep else f"{name}@{digest}"
