"""Where a volume's data comes from: the members of a DataVolume `source` and related enums.

Shared by `DataVolume.spec.source`, `VolumeImportSource.spec.source` (the import-only subset) and
`DataSource.spec.source` (pvc/snapshot). The importer's source modules read these through the PVC
annotations the import controller writes, so field meanings here follow upstream exactly. Cross-field
rules (URL schemes, checksum format, required credentials) live in `cdi.api.source_rules`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, StrictBool

from cdi.api.meta import ApiModel


class ContentType(StrEnum):
    """What the imported bytes are: a disk image (`kubevirt`) or a tar archive to unpack."""

    KUBEVIRT = "kubevirt"
    ARCHIVE = "archive"


class PullMethod(StrEnum):
    """How a registry image is fetched: by an importer pod, or from the node's container runtime."""

    POD = "pod"
    NODE = "node"


class ChecksumAlgorithm(StrEnum):
    """Digest algorithms an HTTP source's `checksum` (`<algorithm>:<hex digest>`) may name."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"


CHECKSUM_HEX_LENGTHS: dict[ChecksumAlgorithm, int] = {
    ChecksumAlgorithm.MD5: 32,
    ChecksumAlgorithm.SHA1: 40,
    ChecksumAlgorithm.SHA256: 64,
    ChecksumAlgorithm.SHA512: 128,
}


class HttpSource(ApiModel):
    """An http(s) endpoint, with optional basic-auth Secret, CA ConfigMap, headers and checksum."""

    url: str
    secret_ref: str | None = None
    cert_config_map: str | None = None
    extra_headers: list[str] = Field(default_factory=list)
    secret_extra_headers: list[str] = Field(default_factory=list)
    checksum: str | None = None
    insecure_skip_verify: StrictBool | None = None


class S3Source(ApiModel):
    """An S3 object URL, with an optional credentials Secret (accessKeyId/secretKey) and CA."""

    url: str
    secret_ref: str | None = None
    cert_config_map: str | None = None


class GcsSource(ApiModel):
    """A Google Cloud Storage object URL, with an optional credentials Secret."""

    url: str
    secret_ref: str | None = None


class PlatformOptions(ApiModel):
    """The platform a multi-architecture registry image is selected for."""

    architecture: str | None = None


class RegistrySource(ApiModel):
    """A container image holding a disk: by URL (docker:// or oci-archive://) or by image stream."""

    url: str | None = None
    image_stream: str | None = None
    pull_method: PullMethod = PullMethod.POD
    secret_ref: str | None = None
    cert_config_map: str | None = None
    platform: PlatformOptions | None = None


class PvcSource(ApiModel):
    """An existing PersistentVolumeClaim to clone."""

    namespace: str
    name: str


class SnapshotSource(ApiModel):
    """An existing VolumeSnapshot to clone from."""

    namespace: str
    name: str


class UploadSource(ApiModel):
    """The data will be uploaded through the upload proxy."""


class BlankSource(ApiModel):
    """An empty raw disk."""


class ImageioSource(ApiModel):
    """A disk exported by oVirt's imageio service."""

    url: str
    disk_id: str = Field(alias="diskId")
    secret_ref: str | None = None
    cert_config_map: str | None = None
    insecure_skip_verify: StrictBool | None = None


class VddkSource(ApiModel):
    """A VMware disk read through the VDDK library."""

    url: str | None = None
    uuid: str | None = None
    backing_file: str | None = None
    thumbprint: str | None = None
    secret_ref: str | None = None
    cert_config_map: str | None = None
    init_image_url: str | None = Field(default=None, alias="initImageURL")
    extra_args: str | None = None
