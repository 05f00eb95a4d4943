"""The upload proxy host's credential files as rotation changes the Secrets behind them (embedded store,
fake clock): its serving certificate renewed under the proxy CA clients pin, the trust bundle and client
certificate copied from the rotated Secrets, a staged token key published before it signs, and a control
plane upgraded from before the proxy CA existed keeping the CA an upload in flight pins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cdi.cli.proxyhost import EmbeddedUploadProxy
from cdi.controllers.upload import credentials as creds
from cdi.controllers.upload.rotation import Schedule
from cdi.controllers.upload.rotator import CertificateRotator
from cdi.embedded import EmbeddedCluster
from cdi.pki import issue, signed_by, split_bundle
from cdi.tokens import load_public_keys
from tests.controllers.test_certificate_rotation import settle
from tests.runtime.clock import FakeClock

HOUR = 3600.0
SCHEDULE = Schedule(refresh=60, propagation=180, token_interval=24 * HOUR)


def proxy(cluster: EmbeddedCluster, home: Path, clock: FakeClock) -> EmbeddedUploadProxy:
    (home / "uploadproxy").mkdir(parents=True, exist_ok=True)
    return EmbeddedUploadProxy(cluster, home, clock, schedule=SCHEDULE)


async def test_the_proxy_files_follow_the_rotated_secrets(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        host = proxy(cluster, tmp_path, clock)
        rotator = CertificateRotator(cluster, clock, creds.CDI_NAMESPACE, SCHEDULE)
        await host.refresh()
        await settle(rotator)
        serving = host.files.server_cert.read_bytes() if host.files.server_cert else b""
        upload_ca = (await creds.ensure_ca_keys(cluster, clock.now())).signer
        assert signed_by(serving, host.ca_pem.encode()) and host.ca_pem.encode() != upload_ca.cert_pem

        clock.advance(24 * HOUR + 1)  # the CA is staged, a token key too
        await settle(rotator)
        await host.refresh()
        staged = (await creds.read_ca(cluster))
        assert staged is not None and staged[1].pending is not None
        assert split_bundle(host.files.upload_server_ca.read_bytes()) == [staged[1].pending.cert_pem,
                                                                           upload_ca.cert_pem]
        ring = (await creds.read_key_ring(cluster))
        assert ring is not None and ring[1].pending is not None
        published = {k.public_numbers() for k in load_public_keys(
            host.files.public_keys.read_bytes() if host.files.public_keys else b"")}
        assert ring[1].pending.public_key.public_numbers() in published  # before it signs anything

        renewed = host.files.server_cert.read_bytes() if host.files.server_cert else b""
        assert renewed != serving and signed_by(renewed, host.ca_pem.encode())  # 24 h: past renewBefore
        assert host.files.client_cert.read_bytes() == creds.decode(
            await cluster.get("v1", "Secret", creds.CLIENT_SECRET, creds.CDI_NAMESPACE))["tls.crt"]


async def test_an_upgraded_control_plane_keeps_the_ca_clients_pinned(tmp_path: Path) -> None:
    """Before the proxy CA, the proxy's serving certificate was signed by the upload-server CA, and a
    `cdi image-upload` in flight across the upgrade trusts only that: it becomes the proxy CA."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        old_ca = await creds.ensure_ca(cluster, clock.now())
        host = proxy(cluster, tmp_path, clock)
        earlier = issue(old_ca, "cdi-uploadproxy", clock.now(), names=("127.0.0.1", "localhost", "::1"))
        assert host.files.server_cert is not None and host.files.server_key is not None
        host.files.server_key.write_bytes(earlier.key_pem)
        host.files.server_cert.write_bytes(earlier.cert_pem)
        await host.refresh()
        assert host.ca_pem.encode() == old_ca.cert_pem
        assert signed_by(host.files.server_cert.read_bytes(), old_ca.cert_pem)
