"""Image references as the registry source receives them in `IMPORTER_ENDPOINT`.

Two transports, as upstream (containers/image) accepts them:

* `docker://[host[:port]/]name[:tag][@sha256:hex]`: a repository on a registry. A first component
  without a dot, a colon or `localhost` is not a host, so `kubevirt/fedora` means Docker Hub
  (`docker.io`, API at `registry-1.docker.io`) and a single-component `fedora` means
  `docker.io/library/fedora`. Without tag or digest the tag is `latest`.
* `oci-archive:path[:name]` (also written `oci-archive://path`): an OCI image layout in a tar file on
  a local path; `name` picks the index entry annotated `org.opencontainers.image.ref.name`. As in
  containers/image the path ends at its first colon.

Malformed references are configuration errors with upstream's wording. Used by
`importer.sources.registry.source`; the clients live in `remote` and `archive`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from importer.errors import ConfigurationError

DOCKER_SCHEME = "docker://"
ARCHIVE_SCHEME = "oci-archive:"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?")
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


@dataclass(frozen=True)
class DockerReference:
    host: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's API host differs from its name)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def manifest_reference(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{DOCKER_SCHEME}{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class ArchiveReference:
    path: Path
    name: str | None

    def __str__(self) -> str:
        return f"{ARCHIVE_SCHEME}{self.path}" + (f":{self.name}" if self.name else "")


ImageReference = DockerReference | ArchiveReference


def _invalid(endpoint: str, why: str) -> ConfigurationError:
    return ConfigurationError(f'Invalid image name "{endpoint}", {why}')


def parse_reference(endpoint: str) -> ImageReference:
    if endpoint.startswith(DOCKER_SCHEME):
        return parse_docker(endpoint[len(DOCKER_SCHEME):], endpoint)
    if endpoint.startswith(ARCHIVE_SCHEME):
        return parse_archive(endpoint[len(ARCHIVE_SCHEME):], endpoint)
    if ":" not in endpoint:
        raise _invalid(endpoint, "expected colon-separated transport:reference")
    raise _invalid(endpoint, "unknown transport")


def _split_host(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, name


def parse_docker(text: str, endpoint: str) -> DockerReference:
    name, _, digest = text.partition("@")
    if digest and not DIGEST.fullmatch(digest):
        raise _invalid(endpoint, f"digest {digest!r} is not of the form sha256:<64 hex digits>")
    tag: str | None = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise _invalid(endpoint, f"tag {tag!r} is not a valid tag")
    host, repository = _split_host(name)
    if not _HOST.fullmatch(host):
        raise _invalid(endpoint, f"registry host {host!r} is not a valid host name")
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not repository or not all(_COMPONENT.fullmatch(part) for part in repository.split("/")):
        raise _invalid(endpoint, f"repository name {repository!r} must be lower-case components separated by '/'")
    if tag is None and not digest:
        tag = DEFAULT_TAG
    return DockerReference(host, repository, tag, digest or None)


def parse_archive(text: str, endpoint: str) -> ArchiveReference:
    path, _, name = text.partition(":")
    if not path.strip("/"):
        raise _invalid(endpoint, "the oci-archive transport needs a path to an OCI archive")
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # oci-archive:///abs and oci-archive://abs both mean /abs
    return ArchiveReference(Path(path), name or None)
