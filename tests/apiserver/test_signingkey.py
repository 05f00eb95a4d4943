"""Secret `cdi-api-signing-key`: created once in upstream's shape, loaded ever after."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from cdi.apiserver.signingkey import ensure_signing_key
from cdi.embedded import EmbeddedCluster
from cdi.tokens import TokenVerifier, issue_token, upload_payload


async def test_the_key_is_created_once_and_then_loaded(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        first = await ensure_signing_key(cluster, "cdi", time.time())
        again = await ensure_signing_key(cluster, "cdi", time.time())
        secret = await cluster.get("v1", "Secret", "cdi-api-signing-key", "cdi")
    assert first.kid == again.kid
    assert isinstance(first.private_key, rsa.RSAPrivateKey) and first.private_key.key_size == 2048
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert set(data) == {"id_rsa", "id_rsa.pub"}
    assert data["id_rsa"].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    # What the upload proxy is given (APISERVER_PUBLIC_KEY) verifies what the API server signs.
    token = issue_token(again, upload_payload("vms", "disk"), time.time())
    assert TokenVerifier.from_pem_bundle(data["id_rsa.pub"]).verify_upload(token, time.time()).name == "disk"
