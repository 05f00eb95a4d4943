"""The cluster installer: everything `cdi manifests` renders, customized by the CDI resource, applied by the operator.

`ManifestInstaller` renders `cdi.install.render_all` for the operator's namespace and image, with the
certificates kept in Secret `cdi-operator-pki` (so a reconcile reuses them and rotates only what is due, by
the CR's `certConfig` lifetimes, exactly as given; the reconciler wakes when the first falls due), customizes
the documents (`cdi.operator.customize`), stamps each with the CR's controller ownerReference
and the version labels, and applies them one by one with server-side apply (field manager `cdi-operator`,
forced: the operator owns what it renders; drift is reverted at the next reconcile). Not applied: the
Namespace (the operator's own, where it runs, which must outlive the CR) and the CDI CRD (it comes with the
operator).

Readiness is upstream's `CheckDeploymentReady` for the three Deployments, plus a finished rollout. Stale
objects are those labelled with a createVersion and controlled by the CR that this version no longer renders;
they are deleted with foreground propagation. Uninstalling deletes `cdi-deployment` first (foreground), as
upstream; everything else goes with the CR through garbage collection, CRDs included (and with them every
DataVolume).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, DeleteOptions, Object
from cdi.contracts import deployment as dep
from cdi.goduration import parse as go_duration
from cdi.install import InstallOptions, render_all
from cdi.install.objects import INSTALL_KINDS, document, metadata
from cdi.install.tls import Credentials, Lifetime, Lifetimes, credentials, next_renewal
from cdi.operator import contract as c
from cdi.operator.customize import customize, stamp
from cdi.operator.installer import InstallState
from cdi.operator.plan import ObjectRef, Problem
from cdi.operator.reconciler import cdi_owner_keys, controlled_by, owner_ref
from cdi.pki import KeyPair
from cdi.runtime.types import Watch

log = logging.getLogger(__name__)
PKI_SECRET = "cdi-operator-pki"
# The CDI resource's own CRD ships with the operator (upstream's cdi-operator.yaml), not under the CR: owned
# by the CR, deleting the CR would delete the kind and no CR could ever be created again.
CDI_CRD = "cdis.cdi.kubevirt.io"
DEPLOYMENTS = (dep.CONTROLLER, dep.APISERVER, dep.UPLOADPROXY)
# Kinds an install may leave behind, listed when looking for stale objects.
_STALE_KINDS = (*((k.api_version, k.kind) for k in INSTALL_KINDS), ("v1", "Service"), ("v1", "Secret"),
                ("v1", "ConfigMap"))


# CDI's own operator takes any certConfig (a renewBefore not shorter than the duration then rotates at every
# sync); upstream's HyperConverged webhook, which validates the certConfig it passes on to CDI, refuses it, and a
# leaf outliving its CA, in the words used here. It also wants at least 10 minutes; we only want more than
# nothing, as the upload path's rotator (`cdi.controllers.upload.rotation`), which reads the same certConfig and
# whose tests run on seconds. Refused entries are said in Degraded (`InvalidCertConfig`) and keep a static
# install's lifetime meanwhile.
MIN_CERT_DURATION = timedelta(seconds=1)


def _cert_entry(kind: str, entry: Mapping[str, Any]) -> tuple[timedelta | None, timedelta | None]:
    """The entry's duration and renewBefore (None where unset); ValueError with upstream's words otherwise."""
    read: dict[str, timedelta | None] = {}
    for field in ("duration", "renewBefore"):
        text = entry.get(field)
        try:
            read[field] = value = go_duration(text) if text else None
        except ValueError as e:
            raise ValueError(f"spec.certConfig.{kind}.{field}: {e}") from e
        if value is not None and value < MIN_CERT_DURATION:
            raise ValueError(f"spec.certConfig.{kind}.{field}: value is too small ({text}; at least 1s)")
    duration, before = read["duration"], read["renewBefore"]
    if duration is not None and before is not None and before >= duration:
        raise ValueError(f"spec.certConfig.{kind}: duration is smaller than renewBefore"
                         f" ({entry['duration']} is not longer than {entry['renewBefore']})")
    return duration, before


def lifetimes(cert_config: Mapping[str, Any] | None) -> tuple[Lifetimes, list[str]]:
    """The CR's certConfig as `Lifetimes`, exactly (any Go duration: 1h30m renewed 30m before its end), and the
    entries refused (unreadable, zero, renewBefore not shorter than the duration, a leaf outliving the CA),
    which keep a static install's lifetime. Only a duration: renewed half-way; only renewBefore: the default
    duration."""
    defaults, problems = Lifetimes(), []
    chosen: dict[str, Lifetime] = {}
    for kind in ("ca", "server", "client"):
        default: Lifetime = getattr(defaults, kind)
        try:
            duration, before = _cert_entry(kind, (cert_config or {}).get(kind) or {})
            if duration is None and before is not None and before >= default.duration:
                raise ValueError(f"spec.certConfig.{kind}: duration is smaller than renewBefore")
        except ValueError as e:
            problems.append(str(e))
            continue
        if duration is not None or before is not None:
            chosen[kind] = Lifetime(duration or default.duration,
                                    before or (duration / 2 if duration else default.renew_before))
    ca = chosen.get("ca", defaults.ca)
    for kind in ("server", "client"):
        leaf: Lifetime = chosen.get(kind, getattr(defaults, kind))
        if kind in chosen and leaf.duration > ca.duration:  # upstream's webhook: "ca.duration is smaller than ..."
            problems.append(f"spec.certConfig: ca.duration is smaller than {kind}.duration")
            leaf = getattr(defaults, kind)
        # A certificate never outlives its CA (`pki.issue` caps it), so a leaf due before its CA would be issued
        # again at every reconcile while the CA nears its end: a leaf renews no earlier than the CA does.
        chosen[kind] = Lifetime(leaf.duration, min(leaf.renew_before, ca.renew_before))
    return Lifetimes(**chosen), problems


def deployment_ready(deployment: Mapping[str, Any]) -> bool:
    """Upstream's CheckDeploymentReady (every wanted replica exists and is ready), and, stricter, the Deployment
    controller has seen the latest spec and rolled every replica to it: right after an upgrade applies a new
    image, the old replicas' readiness must not count."""
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    return bool(status.get("replicas", 0) == wanted and status.get("readyReplicas", 0) == wanted
                and status.get("observedGeneration", 0) >= generation
                and status.get("updatedReplicas", wanted) == wanted)


def _pairs_from(secret: Mapping[str, Any] | None) -> dict[str, KeyPair]:
    data = (secret or {}).get("data") or {}
    pairs = {}
    for stem in Credentials.__dataclass_fields__:
        stem = stem.replace("_", "-")
        if f"{stem}.crt" in data and f"{stem}.key" in data:
            pairs[stem] = KeyPair(base64.b64decode(data[f"{stem}.crt"]), base64.b64decode(data[f"{stem}.key"]))
    return pairs


def pki_secret(namespace: str, creds: Credentials) -> Object:
    """Where the operator keeps the install's CAs and certificates, keys included, between reconciles."""
    data = {}
    for stem, pair in creds.pairs().items():
        data[f"{stem}.crt"] = base64.b64encode(pair.cert_pem).decode()
        data[f"{stem}.key"] = base64.b64encode(pair.key_pem).decode()
    return document("v1", "Secret", metadata(PKI_SECRET, namespace, component=c.COMPONENT), type="Opaque",
                    data=data)


class ManifestInstaller:
    def __init__(self, cluster: Cluster, *, namespace: str, image: str,
                 clock: Callable[[], datetime], monitoring: bool = False) -> None:
        self._cluster, self._namespace, self._image = cluster, namespace, image
        self._clock, self._monitoring = clock, monitoring

    def watches(self) -> Sequence[Watch]:
        return (Watch("apps/v1", "Deployment", cdi_owner_keys, namespace=self._namespace),)

    async def desired(self, cr: Mapping[str, Any]) -> tuple[list[Object], list[Problem], datetime]:
        """The documents to apply for `cr` (unstamped), what of the CR was refused, and when the first of the
        certificates they hold falls due."""
        spec = cr.get("spec") or {}
        chosen, invalid = lifetimes(spec.get("certConfig"))
        try:
            stored = _pairs_from(await self._cluster.get("v1", "Secret", PKI_SECRET, self._namespace))
        except NotFound:
            stored = {}
        creds = credentials(self._namespace, self._clock(), stored, chosen)
        rendered = [d for d in render_all(InstallOptions(creds, self._namespace, self._image, self._monitoring))
                    if d["kind"] != "Namespace" and d["metadata"]["name"] != CDI_CRD]
        documents, refused = customize([pki_secret(self._namespace, creds), *rendered], spec)
        problems = [*(Problem(c.INVALID_CERT_CONFIG, x) for x in invalid),
                    *(Problem(c.CUSTOMIZATION_REFUSED, x) for x in refused)]
        return documents, problems, next_renewal(creds, chosen)

    async def observe(self, cr: Mapping[str, Any], version: str) -> InstallState:
        documents, problems, renew_at = await self.desired(cr)
        components = {}
        for name in DEPLOYMENTS:
            try:
                components[name] = deployment_ready(await self._cluster.get("apps/v1", "Deployment", name,
                                                                            self._namespace))
            except NotFound:
                components[name] = False
        return InstallState(components, tuple(problems), tuple(await self._stale(cr, documents)), renew_at)

    async def _stale(self, cr: Mapping[str, Any], documents: list[Object]) -> list[ObjectRef]:
        wanted = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in documents}
        stale = []
        for api_version, kind in _STALE_KINDS:
            try:
                listed = await self._cluster.list(api_version, kind, label_selector=c.CREATE_VERSION_LABEL)
            except NotFound:
                continue  # a kind this cluster does not serve
            for obj in listed.items:
                meta = obj["metadata"]
                if controlled_by(obj, cr["metadata"]["uid"]) and \
                        (kind, meta["name"], meta.get("namespace")) not in wanted:
                    stale.append(ObjectRef(api_version, kind, meta["name"], meta.get("namespace")))
        return stale

    async def install(self, cr: Mapping[str, Any], version: str) -> None:
        documents, _problems, _renew_at = await self.desired(cr)
        owner = owner_ref(cr)
        for doc in documents:
            meta = doc["metadata"]
            created = await self._created_version(doc)
            await self._cluster.patch(doc["apiVersion"], doc["kind"], meta["name"], stamp(doc, owner, version, created),
                                      meta.get("namespace"), patch_type="apply", field_manager=c.FIELD_MANAGER,
                                      force=True)

    async def _created_version(self, doc: Object) -> str | None:
        meta = doc["metadata"]
        try:
            stored = await self._cluster.get(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace"))
        except NotFound:
            return None
        return ((stored.get("metadata") or {}).get("labels") or {}).get(c.CREATE_VERSION_LABEL)

    async def delete_stale(self, objects: Sequence[ObjectRef]) -> None:
        for ref in objects:
            log.info("deleting %s: this version no longer installs it", ref)
            await self._delete(ref)

    async def uninstall(self, cr: Mapping[str, Any]) -> None:
        await self._delete(ObjectRef("apps/v1", "Deployment", dep.CONTROLLER, self._namespace))

    async def _delete(self, ref: ObjectRef) -> None:
        try:
            await self._cluster.delete(ref.api_version, ref.kind, ref.name, ref.namespace,
                                       options=DeleteOptions(propagation="Foreground"))
        except NotFound:
            pass
