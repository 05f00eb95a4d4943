"""Admission rules for individual source members (http, s3, gcs, registry, imageio, vddk, pvc, snapshot).

Upstream's webhook applies the same checks to a DataVolume's `source` and a VolumeImportSource's; both
call these from `cdi.api.datavolume_rules` and `cdi.api.validation`. Every function returns messages
of the form "<field path>: <what is wrong>", empty when the member is acceptable. Message texts follow
upstream where it has one; the field path says which member is meant.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cdi.api.meta import ApiModel
from cdi.api.sources import (
    CHECKSUM_HEX_LENGTHS,
    ChecksumAlgorithm,
    ContentType,
    GcsSource,
    HttpSource,
    ImageioSource,
    PullMethod,
    PvcSource,
    RegistrySource,
    S3Source,
    SnapshotSource,
    VddkSource,
)

TRANSFER_URL_SCHEMES = ("http", "https", "gs")
REGISTRY_URL_SCHEMES = ("docker", "oci-archive")
_HEX = re.compile(r"^[0-9a-fA-F]*$")


def check_transfer_url(url: str | None, path: str) -> list[str]:
    """An absolute http, https or gs URL (upstream uses Go's ParseRequestURI, then checks the scheme)."""
    if not url:
        return [f"{path}: source URL is empty"]
    try:
        parts = urlsplit(url)
    except ValueError:
        return [f"{path}: Invalid source URL: {url}"]
    if any(c.isspace() for c in url) or not parts.scheme or not (parts.netloc or parts.path.startswith("/")):
        return [f"{path}: Invalid source URL: {url}"]
    if parts.scheme not in TRANSFER_URL_SCHEMES:
        return [f"{path}: Invalid source URL scheme: {url} (use one of {', '.join(TRANSFER_URL_SCHEMES)})"]
    return []


def check_checksum(checksum: str, path: str) -> list[str]:
    """`<algorithm>:<hex digest>` with a known algorithm and a digest of the right length."""
    name, _, digest = checksum.partition(":")
    try:
        algorithm = ChecksumAlgorithm(name)
    except ValueError:
        known = ", ".join(a.value for a in ChecksumAlgorithm)
        return [f"{path}: checksum {checksum!r} must be <algorithm>:<hex digest> with algorithm one of {known}"]
    length = CHECKSUM_HEX_LENGTHS[algorithm]
    if len(digest) != length or not _HEX.match(digest):
        return [f"{path}: {algorithm} checksum must be {length} hexadecimal characters, got {digest!r}"]
    return []


def check_http(source: HttpSource, path: str) -> list[str]:
    problems = check_transfer_url(source.url, f"{path}.url")
    if source.checksum is not None:
        problems += check_checksum(source.checksum, f"{path}.checksum")
    return problems


def check_s3(source: S3Source, path: str) -> list[str]:
    return check_transfer_url(source.url, f"{path}.url")


def check_gcs(source: GcsSource, path: str) -> list[str]:
    return check_transfer_url(source.url, f"{path}.url")


def check_registry(source: RegistrySource, content_type: ContentType, path: str,
                   content_type_path: str) -> list[str]:
    """Exactly one of url/imageStream; docker:// or oci-archive://; image streams only via the node."""
    problems: list[str] = []
    if content_type != ContentType.KUBEVIRT:
        problems.append(f"{content_type_path}: ContentType must be kubevirt when Source is Registry")
    if (source.url is None) == (source.image_stream is None):
        return [*problems, f"{path}: Source registry should have either URL or ImageStream"]
    if source.url is not None:
        scheme = source.url.partition("://")[0] if "://" in source.url else ""
        if scheme not in REGISTRY_URL_SCHEMES:
            problems.append(f"{path}.url: Illegal registry source URL scheme {source.url} "
                            f"(use docker:// or oci-archive://)")
    elif not source.image_stream:
        problems.append(f"{path}.imageStream: Source registry ImageStream is not valid")
    elif source.pull_method != PullMethod.NODE:
        problems.append(f"{path}.pullMethod: Source registry ImageStream is supported only with "
                        f"node pull import method")
    return problems


def check_imageio(source: ImageioSource, path: str) -> list[str]:
    """secretRef and diskId are needed, and certConfigMap unless TLS verification is skipped."""
    missing = [name for name, value in (("secretRef", source.secret_ref), ("diskId", source.disk_id)) if not value]
    if not source.cert_config_map and not source.insecure_skip_verify:
        missing.append("certConfigMap")
    if missing:
        return [f"{path}: source Imageio is not valid, missing {', '.join(missing)}"]
    return check_transfer_url(source.url, f"{path}.url")


def check_vddk(source: VddkSource, path: str) -> list[str]:
    """url, uuid, backingFile, thumbprint and secretRef are all needed."""
    required = (("url", source.url), ("uuid", source.uuid), ("backingFile", source.backing_file),
                ("thumbprint", source.thumbprint), ("secretRef", source.secret_ref))
    missing = [name for name, value in required if not value]
    if missing:
        return [f"{path}: source VDDK is not valid, missing {', '.join(missing)}"]
    return check_transfer_url(source.url, f"{path}.url")


def check_clone_source(source: PvcSource | SnapshotSource, path: str, label: str) -> list[str]:
    """A PVC or VolumeSnapshot source names both its namespace and its name."""
    missing = [name for name, value in (("namespace", source.namespace), ("name", source.name)) if not value]
    if missing:
        return [f"{path}: source {label} is not valid, missing {', '.join(missing)}"]
    return []


def check_member(name: str, member: ApiModel, content_type: ContentType, path: str,
                 content_type_path: str) -> list[str]:
    """The rules for one source member, dispatched on its JSON name."""
    member_path = f"{path}.{name}"
    if isinstance(member, HttpSource):
        return check_http(member, member_path)
    if isinstance(member, S3Source):
        return check_s3(member, member_path)
    if isinstance(member, GcsSource):
        return check_gcs(member, member_path)
    if isinstance(member, RegistrySource):
        return check_registry(member, content_type, member_path, content_type_path)
    if isinstance(member, ImageioSource):
        return check_imageio(member, member_path)
    if isinstance(member, VddkSource):
        return check_vddk(member, member_path)
    if isinstance(member, PvcSource):
        return check_clone_source(member, member_path, "PVC")
    if isinstance(member, SnapshotSource):
        return check_clone_source(member, member_path, "Snapshot")
    if name == "blank" and content_type == ContentType.ARCHIVE:
        return [f"{content_type_path}: SourceType cannot be blank and the contentType be archive"]
    return []
