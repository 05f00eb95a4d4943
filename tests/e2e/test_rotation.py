"""Certificates and token keys rotating under a real `cdi serve` while an upload is in flight.

certConfig (on the CDI resource) is cut to seconds — CA 80s renewed 40s before its end, servers 60s/30s,
the client certificate 12s/6s — token keys rotate every 6 s, and readers refresh every half second. A slow
client streams an image through the upload proxy with a token signed before a key rotation, until the
upload-server CA has been replaced under it; meanwhile the proxy's client certificate (kept under the CA
the running upload server trusts), its serving certificate and the token keys rotate too. The upload
finishes with the right bytes, a new connection to the proxy meets a renewed serving certificate, and a
second upload after the rotations (new pod, new CA, new keys) succeeds through `cdi image-upload`.

An embedded upload server keeps the certificate it started with (its Secret's files are materialised
once), so the server lifetime here outlasts the upload: one whose certificate expired could not take the
proxy's next connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import jwt
import pytest
from cryptography import x509

from cdi.cli.state import open_cluster
from cdi.controllers.upload.credentials import CA_SECRET, CLIENT_SECRET, TOKEN_KEYS_SECRET, RingSecret
from cdi.pki import signed_by
from tests.e2e.test_upload import image_upload
from tests.support.controlplane import ControlPlane, release_storage

pytestmark = pytest.mark.slow
MiB = 1 << 20
SIZE = 24 * MiB
PIECE = 256 * 1024
PAUSE = 0.6  # at most ~58 s for 96 pieces; full speed once the CA has rotated under the upload
CERT_CONFIG = {"ca": {"duration": "80s", "renewBefore": "40s"},
               "server": {"duration": "60s", "renewBefore": "30s"},
               "client": {"duration": "12s", "renewBefore": "6s"}}


class FastRotatingPlane(ControlPlane):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "CDI_CREDENTIAL_REFRESH_INTERVAL": "0.5", "CDI_TOKEN_KEY_ROTATION_INTERVAL": "6"}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = FastRotatingPlane(tmp_path / "home")
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
        release_storage(plane.home)


def secret(plane: ControlPlane, name: str) -> dict[str, bytes]:
    found = plane.get("secret", name, "cdi")
    assert found is not None, name
    return {k: base64.b64decode(v) for k, v in found["data"].items()}


def proxy_of(plane: ControlPlane) -> tuple[str, ssl.SSLContext]:
    config = plane.get("cdiconfig", "config", namespace="")
    assert config is not None
    context = ssl.create_default_context(cadata=config["status"]["uploadProxyCA"])
    return config["status"]["uploadProxyURL"], context


def serving_serial(url: str, context: ssl.SSLContext) -> int:
    """The serial of the certificate the proxy shows a new connection (verified against status.uploadProxyCA)."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=parsed.hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def upload_token(plane: ControlPlane, pvc: str) -> str:
    async with open_cluster(plane.home, warn=False) as cluster:
        answer = await cluster.create({"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
                                       "metadata": {"name": "token", "namespace": "default"},
                                       "spec": {"pvcName": pvc}})
    return str(answer["status"]["token"])


def current_kid(plane: ControlPlane) -> str:
    return RingSecret.from_data(secret(plane, TOKEN_KEYS_SECRET)).ring.current.kid


async def slow_body(plane: ControlPlane, data: bytes, signer: bytes, seen: dict[str, bytes]) -> AsyncIterator[bytes]:
    """`data` a piece at a time, slowly until the CA that signs upload servers is no longer `signer` and two
    refreshes have passed; `seen` gets the CA Secret and the client certificate as they were then."""
    rotated_at: float | None = None
    for start in range(0, len(data), PIECE):
        if rotated_at is None or time.monotonic() - rotated_at < 2.0:
            await asyncio.sleep(PAUSE)
            ca = await asyncio.to_thread(secret, plane, CA_SECRET)
            if rotated_at is None and ca["tls.crt"] != signer:
                rotated_at = time.monotonic()
            elif rotated_at is not None and "client" not in seen and time.monotonic() - rotated_at >= 2.0:
                seen |= {"ca": ca["tls.crt"], "previous": ca.get("previous.crt", b""),
                         "client": (await asyncio.to_thread(secret, plane, CLIENT_SECRET))["tls.crt"]}
        yield data[start:start + PIECE]


async def test_an_upload_in_flight_finishes_across_certificate_and_key_rotations(plane: ControlPlane) -> None:
    plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "CDI", "metadata": {"name": "cdi"},
                 "spec": {"certConfig": CERT_CONFIG}})
    # The CA made at start (48 h) is longer than certConfig now allows: it is replaced within seconds.
    first_ca = secret(plane, CA_SECRET)["tls.crt"]
    plane.wait_for(lambda: secret(plane, CA_SECRET)["tls.crt"] != first_ca, "the first CA to be replaced", 30)

    plane.apply({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                 "metadata": {"name": "rotating", "namespace": "default"},
                 "spec": {"source": {"upload": {}}, "storage": {"resources": {"requests": {"storage": "64Mi"}}}}})
    plane.wait_for(lambda: (plane.get("dv", "rotating") or {}).get("status", {}).get("phase") == "UploadReady",
                   "the upload server to be ready")
    url, context = proxy_of(plane)
    serial_before = serving_serial(url, context)

    token = await upload_token(plane, "rotating")
    signed_with = jwt.get_unverified_header(token)["kid"]
    plane.wait_for(lambda: current_kid(plane) != signed_with, "the token key to rotate", 30)

    data = hashlib.shake_256(b"rotation").digest(SIZE)
    at_start = {"ca": secret(plane, CA_SECRET)["tls.crt"], "client": secret(plane, CLIENT_SECRET)["tls.crt"]}
    kid_at_start = current_kid(plane)
    seen: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/v1beta1/upload", data=slow_body(plane, data, at_start["ca"], seen), ssl=context,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
            timeout=aiohttp.ClientTimeout(total=180)) as response:
        answer = await response.text()
    client_at_end, kid_at_end = secret(plane, CLIENT_SECRET)["tls.crt"], current_kid(plane)

    assert response.status == 200, answer + plane.log_tail()
    # The CA was replaced while the bytes were moving; the client certificate was renewed meanwhile but kept
    # under the CA the running upload server was started with; token keys rotated.
    assert seen, "the CA did not rotate during the upload\n" + plane.log_tail()
    assert seen["ca"] != at_start["ca"] and seen["previous"] == at_start["ca"]
    assert signed_by(seen["client"], at_start["ca"]) and seen["client"] != at_start["client"]
    assert client_at_end != at_start["client"] and kid_at_end != kid_at_start
    plane.wait_for(lambda: (plane.get("dv", "rotating") or {}).get("status", {}).get("phase") == "Succeeded",
                   "the DataVolume to succeed")
    with (plane.volume_path("rotating") / "disk.img").open("rb") as disk:
        assert hashlib.sha256(disk.read(SIZE)).hexdigest() == hashlib.sha256(data).hexdigest()

    # A new connection meets a renewed serving certificate, still trusted through status.uploadProxyCA.
    assert serving_serial(url, context) != serial_before

    # After the rotations: a new upload server (certificate from the current CA), the proxy's renewed client
    # certificate, fresh tokens from the current key — through the CLI's resumable protocol.
    image = plane.home / "second.raw"
    image.write_bytes(data[:4 * MiB])
    code, out, err = await image_upload(plane, "dv", "after", "--size", "64Mi", "--image-path", str(image))
    assert code == 0, out + err + plane.log_tail()
    with (plane.volume_path("after") / "disk.img").open("rb") as disk:
        assert disk.read(4 * MiB) == data[:4 * MiB]
    assert "renewed" in plane.log.read_text()
