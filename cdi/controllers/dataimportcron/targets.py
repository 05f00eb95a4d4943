"""What to poll for a DataImportCron: its template's source resolved into a `PollTarget`.

Reads the source's Secret (`accessKeyId`/`secretKey`, base64 as stored) and CA ConfigMap from the
cron's namespace, and CDIConfig's `insecureRegistries` for a registry host (upstream's
`IsInsecureTLS`), the way the import pod is configured for the same source. A PVC source has no
poller: its digest is `uid:<claim uid>` (upstream's `updatePvcDesiredDigest`), read here too.
Used by `cdi.controllers.dataimportcron.controller`; the pollers are in `pollers` and `registry`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.protocol import Cluster, Object
from cdi.controllers.cdiconfig import CONFIG_NAME
from cdi.controllers.dataimportcron.naming import UID_PREFIX
from cdi.controllers.dataimportcron.observe import get_or_none
from cdi.controllers.dataimportcron.polling import PollTarget, SourceUnreachable, UnsupportedSource
from cdi.controllers.meta import namespace_of, uid_of

POLLED_KINDS = ("registry", "http", "s3")
NODE_PULL_REFUSED = ("pullMethod: node needs a container runtime on a node to pull the image and read its digest; "
                     "this CDI has none (the embedded mode runs no container runtime). Use pullMethod: pod (the "
                     "default), which pulls the image in the importer itself")


def template_source(cron: Object) -> tuple[str, dict[str, Any]]:
    """The template's source kind and body (("", {}) when it has none)."""
    source = (((cron.get("spec") or {}).get("template") or {}).get("spec") or {}).get("source") or {}
    for kind, body in source.items():
        if isinstance(body, dict):
            return str(kind), body
    return "", {}


def registry_host(url: str) -> str:
    return url.removeprefix("docker://").split("/", 1)[0] if url.startswith("docker://") else ""


def _decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value or "")).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def pvc_digest(cluster: Cluster, cron: Object, source: dict[str, Any]) -> str:
    namespace = str(source.get("namespace") or namespace_of(cron))
    claim = await get_or_none(cluster, "v1", "PersistentVolumeClaim", str(source.get("name") or ""), namespace)
    if claim is None:
        raise SourceUnreachable(f"source PVC {namespace}/{source.get('name')} not found")
    return UID_PREFIX + uid_of(claim)


async def poll_target(cluster: Cluster, cron: Object) -> PollTarget:
    kind, source = template_source(cron)
    if kind not in POLLED_KINDS:
        raise UnsupportedSource(f"a DataImportCron cannot poll a {kind or 'missing'} source for changes")
    url = str(source.get("url") or "")
    if kind == "registry" and not url:
        raise UnsupportedSource("a registry source without a url (an imageStream) cannot be polled here: "
                                "this CDI has no OpenShift ImageStreams")
    if kind == "registry" and source.get("pullMethod") == "node":
        raise UnsupportedSource(NODE_PULL_REFUSED)
    namespace = namespace_of(cron)
    access, secret = "", ""
    if name := source.get("secretRef"):
        found = await get_or_none(cluster, "v1", "Secret", str(name), namespace)
        if found is None:
            raise SourceUnreachable(f"Secret {namespace}/{name} (secretRef) not found")
        data = found.get("data") or {}
        access, secret = _decode(data.get("accessKeyId")), _decode(data.get("secretKey"))
    certificates: tuple[str, ...] = ()
    if name := source.get("certConfigMap"):
        # Read past the manager's cache (`direct`): one get, instead of watching every ConfigMap of the cluster.
        found = await get_or_none(getattr(cluster, "direct", cluster), "v1", "ConfigMap", str(name), namespace)
        if found is None:
            raise SourceUnreachable(f"ConfigMap {namespace}/{name} (certConfigMap) not found")
        certificates = tuple(str(v) for _, v in sorted((found.get("data") or {}).items()))
    insecure = bool(source.get("insecureSkipVerify"))
    if kind == "registry":
        config = await get_or_none(cluster, CDI_API_VERSION, "CDIConfig", CONFIG_NAME)
        listed: list[str] = ((config or {}).get("spec") or {}).get("insecureRegistries") or []
        insecure = registry_host(url) in listed
    return PollTarget(kind, url, access, secret, certificates, insecure,
                      tuple(str(h) for h in source.get("extraHeaders") or ()))
