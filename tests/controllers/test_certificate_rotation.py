"""The rotation controller against both backends, on a fake clock: the Secrets it creates, stages,
promotes and prunes, in the order an upload in flight needs — the upload server started before a CA
rotation keeps a client certificate it trusts until it is gone — and token keys that verify every token
signed before a rotation until it expires."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdi import tokens
from cdi.cluster.errors import AlreadyExists
from cdi.cluster.protocol import Cluster, Object
from cdi.contracts import annotations as ann
from cdi.controllers.upload import credentials as creds
from cdi.controllers.upload.rotation import Schedule
from cdi.controllers.upload.rotator import KEY_POLL, CertificateRotator, KeyMaker
from cdi.pki import expiry, signed_by, split_bundle
from cdi.runtime.types import Key, Result
from cdi.tokens import TokenVerifier, issue_token, key_id, load_public_keys, upload_payload
from tests.runtime.clock import FakeClock

HOUR = 3600.0
SCHEDULE = Schedule(refresh=60, propagation=180, token_interval=24 * HOUR, token_lifetime=310)
CONFIG = Key("", "config")


async def settle(rotator: CertificateRotator) -> Result:
    """A pass as the controller's queue runs it: again, `KEY_POLL` later, while a token key is being made."""
    for _ in range(400):
        result = await rotator.reconcile(CONFIG)
        if result.requeue_after != KEY_POLL:
            return result
        await asyncio.sleep(KEY_POLL)
    raise AssertionError("the token key was never made")


def data(secret: Object) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


async def secret(cluster: Cluster, name: str, namespace: str) -> dict[str, bytes]:
    return data(await cluster.get("v1", "Secret", name, namespace))


async def upload_server(cluster: Cluster, namespace: str, clock: FakeClock) -> str:
    """An upload server pod as the upload controller makes it: its TLS Secret first, then the pod."""
    name = f"cdi-upload-{uuid.uuid4().hex[:6]}"
    claim = await cluster.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "metadata": {"name": name, "namespace": "default"},
                                  "spec": {"accessModes": ["ReadWriteOnce"],
                                           "resources": {"requests": {"storage": "1Gi"}}}})
    issuer = await creds.upload_issuer(cluster, clock.now(), namespace)
    await cluster.create(creds.upload_server_secret(claim, name, name, issuer, clock.now()))
    await cluster.create({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "namespace": "default",
                                       "labels": {ann.LABEL_COMPONENT: str(ann.Component.UPLOAD_SERVER)}},
                          "spec": {"containers": [{"name": "server", "image": "cdi-uploadserver"}]}})
    return name


async def test_a_rotation_never_leaves_a_live_upload_server_without_a_client_it_trusts(cluster: Cluster) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    namespace = f"cdi-rotation-{uuid.uuid4().hex[:6]}"
    try:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except AlreadyExists:
        pass
    rotator = CertificateRotator(cluster, clock, namespace, SCHEDULE)

    wake = await settle(rotator)
    first = await secret(cluster, creds.CA_SECRET, namespace)
    old_ca = first["tls.crt"]
    assert split_bundle(first[creds.BUNDLE_KEY]) == [old_ca]
    client = await secret(cluster, creds.CLIENT_SECRET, namespace)
    assert signed_by(client["tls.crt"], old_ca) and client["ca.crt"] == first[creds.BUNDLE_KEY]
    assert wake.requeue_after == SCHEDULE.refresh
    ring = creds.RingSecret.from_data(await secret(cluster, creds.TOKEN_KEYS_SECRET, namespace))
    old_key = ring.ring.current
    server = await upload_server(cluster, namespace, clock)

    # 24 h in, within the CA's renewBefore: the next CA is published beside the signer, not used yet;
    # the next token key is published to verifiers, not used yet.
    clock.advance(24 * HOUR + 1)
    await settle(rotator)
    staged = await secret(cluster, creds.CA_SECRET, namespace)
    assert staged["tls.crt"] == old_ca and "pending.crt" in staged
    assert split_bundle(staged[creds.BUNDLE_KEY]) == [staged["pending.crt"], old_ca]
    ring = creds.RingSecret.from_data(await secret(cluster, creds.TOKEN_KEYS_SECRET, namespace))
    assert ring.ring.current.kid == old_key.kid and ring.pending is not None
    token = issue_token(old_key, upload_payload("default", "disk"), clock.now().timestamp())

    # Propagated: the new CA signs. The upload server started before it trusts only the old CA, so the
    # client certificate stays under the old one; the server's own certificate (renewed at the last pass,
    # when its 24 h were half gone, under the then signer) is still good, and its Secret gets the bundle.
    clock.advance(SCHEDULE.propagation)
    await settle(rotator)
    promoted = await secret(cluster, creds.CA_SECRET, namespace)
    new_ca = promoted["tls.crt"]
    assert new_ca == staged["pending.crt"] and promoted["previous.crt"] == old_ca
    assert split_bundle(promoted[creds.BUNDLE_KEY]) == [new_ca, old_ca]
    client = await secret(cluster, creds.CLIENT_SECRET, namespace)
    assert signed_by(client["tls.crt"], old_ca) and client["ca.crt"] == promoted[creds.BUNDLE_KEY]
    pod_secret = await secret(cluster, server, "default")
    assert signed_by(pod_secret["tls.crt"], old_ca) and pod_secret["ca.crt"] == promoted[creds.BUNDLE_KEY]
    assert expiry(pod_secret["tls.crt"]) > clock.now() + timedelta(hours=23)
    ring = creds.RingSecret.from_data(await secret(cluster, creds.TOKEN_KEYS_SECRET, namespace))
    assert ring.ring.current.kid != old_key.kid and ring.pending is None
    verifier = TokenVerifier.from_pem_bundle(ring.verification_pem())
    assert verifier.verify(token, clock.now().timestamp()).name == "disk"  # signed before the rotation

    # The upload ends: the client certificate moves to the new CA; then nothing is signed by the old one
    # any more, and it leaves the bundle.
    await cluster.delete("v1", "Pod", server, "default")
    await settle(rotator)
    client = await secret(cluster, creds.CLIENT_SECRET, namespace)
    assert signed_by(client["tls.crt"], new_ca)
    await settle(rotator)
    assert split_bundle((await secret(cluster, creds.CA_SECRET, namespace))[creds.BUNDLE_KEY]) == [new_ca]

    # A token lifetime after the key rotation the old key is forgotten, and the old token with it.
    clock.advance(SCHEDULE.token_lifetime + 1)
    await settle(rotator)
    ring = creds.RingSecret.from_data(await secret(cluster, creds.TOKEN_KEYS_SECRET, namespace))
    assert ring.ring.previous == ()
    assert old_key.kid not in {key_id(k) for k in ring.ring.verification_keys}
    assert old_key.kid not in {key_id(k) for k in load_public_keys(ring.verification_pem())}


async def test_certconfig_of_the_cdi_resource_sets_the_lifetimes(cluster: Cluster) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    namespace = f"cdi-rotation-{uuid.uuid4().hex[:6]}"
    await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cdi = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": {"name": f"cdi-{namespace}"},
           "spec": {"certConfig": {"ca": {"duration": "2h", "renewBefore": "1h"},
                                   "client": {"duration": "30m", "renewBefore": "10m"}}}}
    if not await cluster.served("cdi.kubevirt.io/v1beta1", "CDI"):
        pytest.skip("this backend serves no CDI kind")
    created = await cluster.create(cdi)
    try:
        await settle(CertificateRotator(cluster, clock, namespace, SCHEDULE))
        ca = await secret(cluster, creds.CA_SECRET, namespace)
        client = await secret(cluster, creds.CLIENT_SECRET, namespace)
        assert expiry(ca["tls.crt"]) == clock.now() + timedelta(hours=2)
        assert expiry(client["tls.crt"]) == clock.now() + timedelta(minutes=30)
    finally:
        await cluster.delete("cdi.kubevirt.io/v1beta1", "CDI", created["metadata"]["name"])


async def test_token_keys_are_made_off_the_event_loop_and_checked_once(cluster: Cluster,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An RSA key takes 50-150 ms to make and OpenSSL's check of a loaded one about 70 ms, holding the
    interpreter lock: on the event loop every controller shares, they stalled every reconcile of the
    process (the scale benchmark saw 137-318 ms). Keys are made in a thread; a ring read again (every
    refresh, every 10 s in cdi-apiserver) is not checked again."""
    slow = 0.6  # a stall of half of it fails the test: wide of a loaded machine's scheduling noise
    make = tokens.generate_signing_key

    def slow_make(now: float, bits: int = tokens.KEY_BITS) -> tokens.SigningKey:
        time.sleep(slow)  # blocking, as key generation is
        return make(now, bits)

    loads = 0
    real_load = serialization.load_pem_private_key

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        nonlocal loads
        loads += 1
        return real_load(*args, **kwargs)

    monkeypatch.setattr(creds, "generate_signing_key", slow_make)
    monkeypatch.setattr(serialization, "load_pem_private_key", counted_load)
    namespace = f"cdi-keys-{uuid.uuid4().hex[:6]}"
    try:
        await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except AlreadyExists:
        pass
    worst = 0.0

    async def ticking() -> None:
        nonlocal worst
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - asked - 0.01)

    ticker = asyncio.create_task(ticking())
    try:
        ring = await creds.ensure_ring_secret(cluster, datetime.now(UTC), namespace)  # made, stored, read back
        for _ in range(3):
            found = await creds.read_key_ring(cluster, namespace)
            assert found is not None and found[1].ring.current.kid == ring.ring.current.kid
    finally:
        ticker.cancel()
    assert worst < slow / 2, f"the event loop stalled {worst:.3f}s"
    assert loads == 0  # a key this process made is sound by construction

    # A key made elsewhere (an administrator's Secret) is checked, once.
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = foreign.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    for _ in range(3):
        assert tokens.SigningKey.from_pem(pem, 0.0).kid == tokens.key_id(foreign.public_key())
    assert loads == 1


async def test_a_pass_does_not_wait_for_the_token_key_being_made(cluster: Cluster) -> None:
    """An empty store's first pass writes the CA and the client certificate, starts the token key in a
    thread and ends, asking to look again `KEY_POLL` later; the ring is written by the pass that finds the
    key made, stamped with that pass's time. A key that could not be made fails that pass, and the next
    one starts another."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    namespace = f"cdi-keymaker-{uuid.uuid4().hex[:6]}"
    await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    release, attempts = threading.Event(), []

    def slow_key(now: float) -> tokens.SigningKey:
        attempts.append(now)
        if len(attempts) == 1:
            raise OSError("no entropy today")
        assert release.wait(30)
        return tokens.generate_signing_key(now)

    rotator = CertificateRotator(cluster, clock, namespace, SCHEDULE, keys=KeyMaker(slow_key))
    with pytest.raises(OSError, match="no entropy"):
        await settle(rotator)  # the first key fails
    assert (await rotator.reconcile(CONFIG)).requeue_after == KEY_POLL  # the second is being made
    assert (await secret(cluster, creds.CA_SECRET, namespace))["tls.crt"]
    assert (await secret(cluster, creds.CLIENT_SECRET, namespace))["tls.crt"]
    assert await creds.read_key_ring(cluster, namespace) is None
    clock.advance(5)
    release.set()
    assert (await settle(rotator)).requeue_after >= 1.0
    found = await creds.read_key_ring(cluster, namespace)
    assert found is not None and found[1].ring.current.created == clock.now().timestamp()
    assert len(attempts) == 2


async def test_a_ring_written_elsewhere_meanwhile_ends_the_wait(cluster: Cluster) -> None:
    """Another process (the upload proxy) may write the ring while this controller's key is being made:
    the next pass finds nothing to do for the ring and goes back to its usual schedule."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    namespace = f"cdi-keymaker-{uuid.uuid4().hex[:6]}"
    await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    release = threading.Event()

    def held_key(now: float) -> tokens.SigningKey:
        assert release.wait(30)
        return tokens.generate_signing_key(now)

    rotator = CertificateRotator(cluster, clock, namespace, SCHEDULE, keys=KeyMaker(held_key))
    try:
        assert (await rotator.reconcile(CONFIG)).requeue_after == KEY_POLL
        written = await creds.ensure_ring_secret(cluster, clock.now(), namespace)
        assert (await rotator.reconcile(CONFIG)).requeue_after >= 1.0
        found = await creds.read_key_ring(cluster, namespace)
        assert found is not None and found[1].ring.current.kid == written.ring.current.kid
    finally:
        release.set()
