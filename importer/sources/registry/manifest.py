"""Manifests, indexes and image configs, parsed at the edge into typed values (pure).

Accepted: OCI image manifest and index, Docker schema 2 manifest and manifest list (schema 1 is
refused, as modern containers/image does for pulls by digest). The kind is taken from the document's
`mediaType`, else the HTTP Content-Type, else its shape. Anything that does not parse, or names a
blob without a valid digest and size, is a fatal `InvalidImage` saying which document is malformed.

Also here: choosing an index entry for a platform (`select_platform`, upstream's message when none
matches), the host's platform in OCI terms, and the image-config facts upstream acts on: the
architecture check, the bootc refusal and `envsToLabels` (`env_labels`).
Used by `importer.sources.registry.image`.
"""

from __future__ import annotations

import json
import platform as host
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from importer.errors import InvalidImage
from importer.sources.registry.reference import DIGEST

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
BOOTC_LABELS = ("containers.bootc", "ostree.bootable")
BOOTC_REFUSED = ("bootc image detected: this image contains an ostree-based bootable OS (containers.bootc=1 or "
                 "ostree.bootable=1) and cannot be imported as a regular container disk; bootc-to-disk conversion "
                 "is not yet implemented")
_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
             "s390x": "s390x", "armv7l": "arm", "i686": "386", "i386": "386", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str = "linux"
    variant: str = ""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageManifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageIndex:
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    architecture: str
    os: str
    env: tuple[str, ...]
    labels: Mapping[str, str]


def host_platform() -> Platform:
    machine = host.machine().lower()
    return Platform(_MACHINES.get(machine, machine), "linux", "v7" if machine == "armv7l" else "")


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidImage(f"{what} is malformed: not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise InvalidImage(f"{what} is malformed: expected a JSON object, got {type(doc).__name__}")
    return doc


def _descriptor(raw: object, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidImage(f"{what} is malformed: a descriptor is not a JSON object")
    digest, size = raw.get("digest"), raw.get("size")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise InvalidImage(f"{what} is malformed: descriptor digest {digest!r} is not sha256:<hex> or sha512:<hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidImage(f"{what} is malformed: descriptor {digest} has an invalid size {size!r}")
    plat = raw.get("platform")
    parsed = None
    if isinstance(plat, dict) and isinstance(plat.get("architecture"), str):
        parsed = Platform(plat["architecture"], str(plat.get("os") or ""), str(plat.get("variant") or ""))
    notes = raw.get("annotations") if isinstance(raw.get("annotations"), dict) else {}
    return Descriptor(str(raw.get("mediaType") or ""), digest, size, parsed,
                      {str(k): str(v) for k, v in (notes or {}).items()})


def _kind(doc: dict[str, Any], content_type: str) -> str:
    declared = doc.get("mediaType") or content_type.split(";")[0].strip()
    if declared in MANIFEST_TYPES or declared in INDEX_TYPES or declared in DOCKER_SCHEMA1:
        return str(declared)
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[0]
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(body: bytes, content_type: str, what: str) -> ImageManifest | ImageIndex:
    doc = _load(body, what)
    kind = _kind(doc, content_type)
    if kind in DOCKER_SCHEMA1:
        raise InvalidImage(f"{what} is a Docker schema 1 manifest, which is not supported: push the image again "
                           f"with a current client")
    if doc.get("schemaVersion") != 2:
        raise InvalidImage(f"{what} is malformed: schemaVersion is {doc.get('schemaVersion')!r}, expected 2")
    if kind in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidImage(f"{what} is malformed: 'manifests' is not a list")
        return ImageIndex(tuple(_descriptor(e, what) for e in entries))
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidImage(f"{what} is malformed: 'layers' is not a list")
    if "config" not in doc:
        raise InvalidImage(f"{what} is malformed: no 'config' descriptor")
    return ImageManifest(_descriptor(doc["config"], what), tuple(_descriptor(layer, what) for layer in layers))


def select_platform(index: ImageIndex, wanted: Platform) -> Descriptor:
    """The entry for `wanted`'s architecture on Linux; among variants, `wanted`'s, else the first."""
    matches = [d for d in index.manifests if d.platform is not None and d.platform.architecture == wanted.architecture
               and d.platform.os in ("linux", "") and d.media_type not in INDEX_TYPES]
    if not matches:
        raise InvalidImage(f'choosing image instance: no image found in image index for architecture '
                           f'"{wanted.architecture}", variant "{wanted.variant}", OS "{wanted.os}"')
    return next((d for d in matches if d.platform is not None and d.platform.variant == wanted.variant), matches[0])


def parse_config(body: bytes, what: str) -> ImageConfig:
    doc = _load(body, what)
    inner = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    env = (inner or {}).get("Env") or []
    labels = (inner or {}).get("Labels") or {}
    if not isinstance(env, list) or not isinstance(labels, dict):
        raise InvalidImage(f"{what} is malformed: config.Env must be a list and config.Labels an object")
    return ImageConfig(str(doc.get("architecture") or ""), str(doc.get("os") or ""),
                       tuple(str(e) for e in env), {str(k): str(v) for k, v in labels.items()})


def check_config(config: ImageConfig, requested_architecture: str) -> None:
    """Upstream's checks on the chosen image: the requested architecture, and no bootc images."""
    if requested_architecture and config.architecture != requested_architecture:
        raise InvalidImage(f'Error validating architecture: manifest image architecture: "{config.architecture}" '
                           f'doesn\'t match requested architecture: "{requested_architecture}"')
    if any(config.labels.get(label) == "1" for label in BOOTC_LABELS):
        raise InvalidImage(BOOTC_REFUSED)


def env_labels(env: tuple[str, ...]) -> dict[str, str]:
    """Upstream's envsToLabels: `INSTANCETYPE_KUBEVIRT_IO_DEFAULT_PREFERENCE=fedora` becomes
    `instancetype.kubevirt.io/default-preference: fedora`; other variables are ignored."""
    marker = "KUBEVIRT_IO_"
    labels: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        at = name.find(marker)
        if not sep or at < 0 or (at > 0 and name[at - 1] != "_"):
            continue
        prefix = name[:at].rstrip("_").lower().replace("_", ".")
        suffix = name[at + len(marker):].lower().replace("_", "-")
        if suffix:
            labels[f"{prefix + '.' if prefix else ''}kubevirt.io/{suffix}"] = value
    return labels
