"""The certificate and key rotation controller: observe the upload path's Secrets, plan with
`cdi.controllers.upload.rotation`, apply. Runs in `cdi serve` and `cdi controller` (`cdi.controllers.setup`).

Keyed on the cluster's CDIConfig (`config`), it wakes when an upload server starts or ends (the client
certificate may move to a new CA then), and otherwise when the next certificate or key falls due — at
most `Schedule.refresh` seconds apart, as upstream's operator syncs every minute. Each pass:

1. the upload-server CA: created, staged, promoted, its previous one dropped (`plan_ca`);
2. the proxy's client certificate (Secret `cdi-uploadserver-client-cert`, with the trust bundle as
   `ca.crt`) and the bundle ConfigMap `cdi-uploadserver-signer-bundle` a cluster's proxy mounts;
3. every live upload server's Secret: its certificate renewed when due, its `ca.crt` set to the bundle (on
   a cluster kubelet refreshes the mounted files and the server reloads them for new connections,
   `importer.uploadserver.security`; an embedded pod keeps what it started with);
4. the upload token key ring (`plan_ring`). A new key is made in a thread (`KeyMaker`) while the pass
   ends and comes back for it `KEY_POLL` later, writing nothing for the ring meanwhile.

Objects rendered by `cdi operator` (controlled by the CDI resource) are its to rotate, by the same
certConfig: this controller leaves the CA chain alone then, and says so once in its log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cdi.api.meta import CDI_API_VERSION
from cdi.cluster.errors import NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME
from cdi.controllers.meta import name_of, namespace_of
from cdi.controllers.upload import credentials as creds
from cdi.controllers.upload.rotation import (
    CertPolicies,
    CreateCa,
    CreateRing,
    DropPreviousCa,
    ForgetKeys,
    PromoteCa,
    PromoteKey,
    RingTimes,
    Schedule,
    StageCa,
    StageKey,
    cert_wake,
    leaf_due,
    plan_ca,
    plan_client,
    plan_ring,
    ring_wake,
)
from cdi.pki import KeyPair, issue, made, new_ca, subject_alt_names
from cdi.runtime.types import DONE, Clock, ControllerSpec, Key, Result, Watch
from cdi.tokens import KeyRing, SigningKey, generate_signing_key

log = logging.getLogger(__name__)
CONFIG_NAME = "config"
MIN_WAKE = 1.0
KEY_POLL = 0.05  # how soon a pass that started making a token key looks for it again


class KeyMaker:
    """Upload-token keys, one at a time, made in a thread: an RSA-2048 key takes 50-150 ms of CPU (the
    prime search varies), so a pass that needs one starts it and comes back for it, rather than hold the
    controller's worker that long (at an empty store's first pass, and at every key rotation)."""

    def __init__(self, make: Callable[[float], SigningKey] = generate_signing_key) -> None:
        self._make = make
        self._making: asyncio.Future[SigningKey] | None = None

    def take(self, now: float) -> SigningKey | None:
        """The key made for this pass, created `now`, once it is ready; until then None (starting it the
        first time). A key that could not be made raises here, and the next pass starts another. One
        made for a pass that then found no need for it (another process wrote the ring) waits for the next
        need."""
        if self._making is None:
            self._making = asyncio.get_running_loop().run_in_executor(None, self._make, now)
        if not self._making.done():
            return None
        made_, self._making = self._making, None
        return replace(made_.result(), created=now)


class CertificateRotator:
    def __init__(self, cluster: Cluster, clock: Clock, namespace: str, schedule: Schedule, *,
                 keys: KeyMaker | None = None) -> None:
        self._cluster, self._clock, self._namespace, self._schedule = cluster, clock, namespace, schedule
        self._keys = keys or KeyMaker()
        self._told_operator = False

    async def reconcile(self, key: Key) -> Result:
        if key.name != CONFIG_NAME:
            return DONE
        now = self._clock.now()
        policies = await creds.cert_policies(self._cluster)
        certificates = await self._certificates(now, policies)
        if (keys := await self._token_keys(now.timestamp())) is None:
            return Result(requeue_after=KEY_POLL)  # a token key is being made: back for it soon
        return Result(requeue_after=max(MIN_WAKE, min(self._schedule.refresh, certificates, keys)))

    # --- certificates ---------------------------------------------------------------------------------------

    async def _certificates(self, now: datetime, policies: CertPolicies) -> float:
        found = await creds.read_ca(self._cluster, self._namespace)
        if found is not None and creds.operator_managed(found[0]):
            if not self._told_operator:
                log.info("the upload-server CA is cdi operator's (certConfig): not rotating it here")
                self._told_operator = True
            return self._schedule.refresh
        servers = await self._live_server_secrets()
        client = await self._get_secret(creds.CLIENT_SECRET, self._namespace)
        client_cert = _data(client).get("tls.crt")
        leaves = tuple(c for c in (client_cert, *(_data(s).get("tls.crt") for s, _ in servers)) if c)
        keys = await self._ca(found, leaves, now, policies)
        bundle = keys.bundle()
        await self._client(client, keys, servers, now, policies)
        await self._bundle_config_map(bundle)
        for secret, _ in servers:
            await self._server(secret, keys, bundle, now, policies)
        certs = keys.certs
        pending_at = float("inf") if certs.pending is None else \
            (made(certs.pending) - now).total_seconds() + self._schedule.propagation
        server_certs = tuple(c for c in (_data(s).get("tls.crt") for s, _ in servers) if c)
        return min(cert_wake((certs.signer,), now, policies.ca), pending_at,
                   cert_wake((client_cert,) if client_cert else (), now, policies.client),
                   cert_wake(server_certs, now, policies.server))

    async def _ca(self, found: tuple[Object, creds.CaKeys] | None, leaves: tuple[bytes, ...], now: datetime,
                  policies: CertPolicies) -> creds.CaKeys:
        actions = plan_ca(found[1].certs if found else None, leaves, now, policies.ca,
                          timedelta(seconds=self._schedule.propagation))
        if not actions:
            assert found is not None
            return found[1]
        if isinstance(actions[0], CreateCa):
            return await creds.ensure_ca_keys(self._cluster, now, self._namespace, policies.ca)
        assert found is not None
        secret, keys = found
        for action in actions:
            if isinstance(action, DropPreviousCa):
                keys = replace(keys, previous=None)
            elif isinstance(action, StageCa):
                keys = replace(keys, pending=new_ca(creds.CA_COMMON_NAME, now, lifetime=policies.ca.duration))
            elif isinstance(action, PromoteCa) and keys.pending is not None:
                keys = creds.CaKeys(keys.pending, None, keys.signer)
        log.info("upload-server CA: %s", ", ".join(type(a).__name__ for a in actions))
        await self._cluster.update({**secret, "data": creds.encode(keys.data())})
        return keys

    async def _client(self, secret: Object | None, keys: creds.CaKeys,
                      servers: list[tuple[Object, datetime | None]], now: datetime,
                      policies: CertPolicies) -> None:
        cert = _data(secret).get("tls.crt")
        trust = tuple(_trusted_at_start(s, started) for s, started in servers)
        plan = plan_client(cert, keys.certs, trust, now, policies.client)
        bundle = keys.bundle()
        if secret is not None and creds.operator_managed(secret):
            return
        if plan.reason is None:
            if secret is not None and _data(secret).get("ca.crt") != bundle:
                await self._cluster.update({**secret, "data": creds.encode({**_data(secret), "ca.crt": bundle})})
            return
        issuer = keys.signer if plan.issuer == keys.signer.cert_pem else keys.previous
        assert issuer is not None
        pair = issue(issuer, UPLOAD_CLIENT_NAME, now, client=True, lifetime=policies.client.duration)
        log.info("proxy client certificate renewed (%s)", plan.reason)
        desired = creds.client_secret(pair, bundle, self._namespace)
        if secret is None:
            await self._cluster.create(desired)
        else:
            await self._cluster.update({**secret, "data": desired["data"]})

    async def _bundle_config_map(self, bundle: bytes) -> None:
        # Past the manager's cache (`direct`): one get, instead of watching every ConfigMap of the cluster.
        live: Cluster = getattr(self._cluster, "direct", self._cluster)
        try:
            config_map = await live.get("v1", "ConfigMap", creds.BUNDLE_CONFIG_MAP, self._namespace)
        except NotFound:
            return  # embedded: the proxy host reads the CA Secret itself
        data = config_map.get("data") or {}
        if creds.operator_managed(config_map) or data.get(creds.BUNDLE_KEY) == bundle.decode():
            return
        await self._cluster.update({**config_map, "data": {**data, creds.BUNDLE_KEY: bundle.decode()}})

    async def _server(self, secret: Object, keys: creds.CaKeys, bundle: bytes, now: datetime,
                      policies: CertPolicies) -> None:
        data = _data(secret)
        cert = data.get("tls.crt")
        reason = leaf_due(cert, now, policies.server, keys.certs.bundle())
        updated: dict[str, str | bytes] = {**data, "ca.crt": bundle}
        if reason is not None and cert is not None:
            old = KeyPair(cert, data.get("tls.key", b""))
            names = subject_alt_names(cert)
            common = old.certificate.subject.rfc4514_string().removeprefix("CN=")
            pair = issue(keys.signer, common, now, names=names, lifetime=policies.server.duration)
            updated |= {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
            log.info("upload server certificate %s/%s renewed (%s)", namespace_of(secret), name_of(secret), reason)
        if updated != data:
            # Replaced, not updated: the controller may create and delete Secrets in users' namespaces but
            # not rewrite them (cdi.install.rbac). Kubelet follows the Secret by name.
            meta = {k: v for k, v in secret["metadata"].items()
                    if k not in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation")}
            await self._cluster.delete("v1", "Secret", name_of(secret), namespace_of(secret))
            await self._cluster.create({**secret, "metadata": meta, "data": creds.encode(updated)})

    async def _live_server_secrets(self) -> list[tuple[Object, datetime | None]]:
        """The TLS Secret of every upload server pod that has not finished (named after the pod), with when
        the pod was made."""
        pods = await self._cluster.list("v1", "Pod", label_selector={ann.LABEL_COMPONENT:
                                                                    str(ann.Component.UPLOAD_SERVER)})
        secrets = []
        for pod in pods.items:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if (secret := await self._get_secret(name_of(pod), namespace_of(pod))) is not None:
                secrets.append((secret, _created(pod)))
        return secrets

    async def _get_secret(self, name: str, namespace: str) -> Object | None:
        try:
            return await self._cluster.get("v1", "Secret", name, namespace)
        except NotFound:
            return None

    # --- token keys -----------------------------------------------------------------------------------------

    async def _token_keys(self, now: float) -> float | None:
        """Apply the ring's plan; when it falls due next, or None while the key it needs is being made."""
        found = await creds.read_key_ring(self._cluster, self._namespace)
        times = None if found is None else RingTimes(found[1].ring.current.created,
                                                     found[1].pending.created if found[1].pending else None,
                                                     found[1].retired)
        actions = plan_ring(times, now, self._schedule)
        needs_key = any(isinstance(action, CreateRing | StageKey) for action in actions)
        new_key = self._keys.take(now) if needs_key else None
        if needs_key and new_key is None:
            return None  # nothing is written for the ring until the key is there
        if actions and isinstance(actions[0], CreateRing):
            ring = await creds.ensure_ring_secret(self._cluster, self._clock.now(), self._namespace, key=new_key)
        elif actions:
            assert found is not None
            secret, ring = found
            for action in actions:
                ring = _apply_ring(ring, action, now, new_key)
            log.info("upload token keys: %s", ", ".join(type(a).__name__ for a in actions))
            await self._cluster.update({**secret, "data": creds.encode(ring.data())})
        else:
            assert found is not None
            ring = found[1]
        return ring_wake(RingTimes(ring.ring.current.created, ring.pending.created if ring.pending else None,
                                   ring.retired), now, self._schedule)


def _apply_ring(ring: creds.RingSecret, action: Any, now: float, new_key: SigningKey | None) -> creds.RingSecret:
    if isinstance(action, StageKey):
        assert new_key is not None
        return replace(ring, pending=new_key)
    if isinstance(action, PromoteKey) and ring.pending is not None:
        promoted = ring.ring.rotate(replace(ring.pending, created=now), retain=action.retain)
        return creds.RingSecret(promoted, None, (now, *ring.retired)[:action.retain])
    if isinstance(action, ForgetKeys):
        return creds.RingSecret(KeyRing(ring.ring.current, ring.ring.previous[:action.keep]), ring.pending,
                                ring.retired[:action.keep])
    return ring


def _data(secret: Object | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


def _created(obj: Object) -> datetime | None:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None


def _trusted_at_start(secret: Object, started: datetime | None) -> tuple[bytes, ...]:
    """The CAs an upload server was started trusting: those in its Secret's `ca.crt` made before its pod was
    (one added since may not have been read: an embedded pod never re-reads its files)."""
    return tuple(ca for ca in creds.bundle_certs(_data(secret).get("ca.crt", b""))
                 if started is None or made(ca) <= started)


def controllers(cluster: Cluster, clock: Clock, *, namespace: str, schedule: Schedule) -> list[ControllerSpec]:
    to_config = lambda _obj: [Key("", CONFIG_NAME)]  # noqa: E731
    pods = Watch("v1", "Pod", to_config, label_selector={ann.LABEL_COMPONENT: str(ann.Component.UPLOAD_SERVER)})
    # No watch of the CDI resource: its kind may not be served (no operator), and a watch of an unserved
    # kind never syncs; a certConfig change is seen within `schedule.refresh`.
    return [ControllerSpec("certificate-rotation", CDI_API_VERSION, "CDIConfig",
                           CertificateRotator(cluster, clock, namespace, schedule), watches=[pods], workers=1)]
