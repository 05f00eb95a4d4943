"""Container disks built in Python and pushed over the registry HTTP API (no docker, no skopeo).

`layer()` makes a tar layer the way the seeds' Dockerfile does (`/disk/` and its one file owned by
107:107, mode 0440), optionally gzip- or zstd-compressed; `image()` adds a config and a manifest (OCI
or Docker media types); `index()` makes a multi-architecture OCI index. `Pusher` uploads blobs
(POST, then a monolithic PUT with the digest) and manifests (PUT) to a registry with no auth.
`write_oci_archive()` packs the same blobs as an `oci-archive:` file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {
    ("oci", None): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
QEMU_UID = 107


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    platform: Mapping[str, str] | None = None

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, object]:
        doc: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            doc["platform"] = dict(self.platform)
        return doc


@dataclass(frozen=True)
class Image:
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config)


def _info(name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = QEMU_UID
    info.mode = 0o555 if directory else 0o440
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = size
    return info


def tar_bytes(files: Mapping[str, bytes | Path], *, directories: Sequence[str] = ("disk/",)) -> bytes:
    """A tar of `files` (contents or paths to copy), with `directories` entries first."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in directories:
            tar.addfile(_info(directory, directory=True))
        for name, content in files.items():
            if isinstance(content, Path):
                with content.open("rb") as source:
                    tar.addfile(_info(name, size=content.stat().st_size), source)
            else:
                tar.addfile(_info(name, size=len(content)), io.BytesIO(content))
    return out.getvalue()


def layer(files: Mapping[str, bytes | Path], *, compression: str | None = "gzip", flavour: str = "oci",
          directories: Sequence[str] = ("disk/",)) -> Blob:
    data = tar_bytes(files, directories=directories)
    if compression == "gzip":
        data = gzip.compress(data, compresslevel=1, mtime=0)
    elif compression == "zstd":
        data = zstandard.ZstdCompressor(level=3).compress(data)
    return Blob(LAYER_TYPES[(flavour, compression)], data)


def image(layers: Sequence[Blob], *, architecture: str = "amd64", env: Sequence[str] = (), flavour: str = "oci",
          config_override: Mapping[str, object] | None = None) -> Image:
    config_doc = {"architecture": architecture, "os": "linux", "config": {"Env": list(env)},
                  "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]}}
    config = Blob(OCI_CONFIG if flavour == "oci" else DOCKER_CONFIG, json.dumps(config_doc).encode())
    manifest_type = OCI_MANIFEST if flavour == "oci" else DOCKER_MANIFEST
    doc: dict[str, object] = {"schemaVersion": 2, "mediaType": manifest_type, "config": config.descriptor(),
                              "layers": [b.descriptor() for b in layers]}
    doc.update(config_override or {})
    return Image(Blob(manifest_type, json.dumps(doc).encode()), config, tuple(layers))


def index(images: Mapping[str, Image]) -> Blob:
    """An OCI index with one Linux entry per architecture."""
    entries = [Blob(OCI_MANIFEST, img.manifest.data, {"architecture": arch, "os": "linux"}).descriptor()
               for arch, img in images.items()]
    return Blob(OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())


class Pusher:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _request(self, method: str, url: str, data: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> tuple[int, Mapping[str, str]]:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}") from e

    def blob(self, repository: str, blob: Blob) -> None:
        _, headers = self._request("POST", f"{self.base_url}/v2/{repository}/blobs/uploads/")
        location = headers["Location"]
        location = location if location.startswith("http") else self.base_url + location
        separator = "&" if "?" in location else "?"
        status, _ = self._request("PUT", f"{location}{separator}digest={blob.digest}", blob.data,
                                  {"Content-Type": "application/octet-stream"})
        assert status == 201, status

    def manifest(self, repository: str, tag: str, manifest: Blob) -> str:
        status, _ = self._request("PUT", f"{self.base_url}/v2/{repository}/manifests/{tag}", manifest.data,
                                  {"Content-Type": manifest.media_type})
        assert status == 201, status
        return manifest.digest

    def image(self, repository: str, tag: str, img: Image) -> str:
        for blob in img.blobs:
            self.blob(repository, blob)
        return self.manifest(repository, tag, img.manifest)


def write_oci_archive(path: Path, images: Mapping[str, Image], *, index_override: bytes | None = None) -> Path:
    """An OCI image layout in a tar: `index.json` names each image by `org.opencontainers.image.ref.name`."""
    entries = [{**img.manifest.descriptor(), "annotations": {"org.opencontainers.image.ref.name": name}}
               for name, img in images.items()]
    index_json = index_override or json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index_json}
    for img in images.values():
        for blob in (*img.blobs, img.manifest):
            files[f"blobs/sha256/{blob.digest.split(':')[1]}"] = blob.data
    path.write_bytes(tar_bytes(files, directories=("blobs/", "blobs/sha256/")))
    return path
