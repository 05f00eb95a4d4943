"""The registry poller: a tag's manifest digest, as upstream's cdi-source-update-poller reads it.

It reuses the importer's registry client (`importer.sources.registry.client`): the same reference
parsing, TLS trust, insecure-registry fallback to plain HTTP and token/basic authentication as the
import that follows, configured through the importer's own environment contract (`load_config`), as
upstream's poller pod gets the importer's variables. The digest is the registry's
`Docker-Content-Digest` for the tag (the index digest of a multi-arch image, which the import then
resolves for its platform), or the SHA-256 of the manifest bytes when a registry omits the header.
`oci-archive:` references cannot be polled (`UnsupportedSource`); `pullMethod: node` is refused before
(`cdi.controllers.dataimportcron.targets`).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from cdi.contracts import importer_env as env
from cdi.controllers.dataimportcron.polling import ImagePullFailed, PollTarget, UnsupportedSource
from importer.config import load_config
from importer.errors import ConfigurationError, ImportFailure
from importer.sources.registry.client import MANIFEST_ACCEPT, RegistryClient
from importer.sources.registry.reference import DockerReference, parse_reference

MANIFEST_LIMIT = 4 << 20


def reference_of(url: str) -> DockerReference:
    try:
        reference = parse_reference(url)
    except ConfigurationError as e:
        raise UnsupportedSource(e.message) from e
    if not isinstance(reference, DockerReference):
        raise UnsupportedSource(f"{url}: only docker:// registry images can be polled for new digests")
    return reference


class RegistryPoller:
    async def poll(self, target: PollTarget) -> str:
        reference = reference_of(target.url)
        with tempfile.TemporaryDirectory(prefix="cdi-poll-") as directory:
            certs = Path(directory) / "certs"
            certs.mkdir()
            for index, pem in enumerate(target.ca_certificates):
                (certs / f"ca-{index}.pem").write_text(pem)
            config = load_config({
                env.SOURCE: env.SOURCE_REGISTRY, env.ENDPOINT: target.url, env.DATA_PATH: directory,
                env.ACCESS_KEY_ID: target.access_key_id, env.SECRET_KEY: target.secret_key,
                env.CERT_DIR: str(certs), env.PROXY_CERT_DIR: str(Path(directory) / "proxy"),
                env.INSECURE_TLS: "true" if target.insecure else "false"})
            try:
                async with RegistryClient(reference, config, idle_timeout=60) as client:
                    response = await client.get(f"manifests/{reference.manifest_reference}", accept=MANIFEST_ACCEPT)
                    header = response.headers.get("Docker-Content-Digest", "")
                    body = await client.read_all(response, MANIFEST_LIMIT, "manifest")
            except ImportFailure as e:
                raise ImagePullFailed(e.message) from e
        return header if header.startswith("sha256:") else "sha256:" + hashlib.sha256(body).hexdigest()
