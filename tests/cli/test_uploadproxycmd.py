"""Where `cdi uploadproxy` gets the keys that verify upload tokens on a cluster (`install_token_keys`),
checked on the embedded store: cdi-apiserver's signing key verifies its tokens, the key ring's keys are
added when a ring exists, nothing is created, and with neither the proxy is told what it waits for."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdi.apiserver.signingkey import ensure_signing_key
from cdi.cli.proxyhost import NoTokenKeys, install_token_keys
from cdi.cluster.errors import NotFound
from cdi.controllers.upload.credentials import TOKEN_KEYS_SECRET, ensure_key_ring
from cdi.embedded import EmbeddedCluster
from cdi.tokens import TokenVerifier, issue_token, upload_payload

NOW = datetime(2025, 1, 1, tzinfo=UTC)


async def test_the_signing_keys_tokens_verify_and_no_ring_is_made(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        key = await ensure_signing_key(cluster, "cdi", time.time())
        bundle = await install_token_keys(cluster, "cdi", NOW)
        with pytest.raises(NotFound):
            await cluster.get("v1", "Secret", TOKEN_KEYS_SECRET, "cdi")
    token = issue_token(key, upload_payload("vms", "disk"), time.time())
    assert TokenVerifier.from_pem_bundle(bundle).verify_upload(token, time.time()).name == "disk"


async def test_an_existing_key_ring_also_verifies(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        await ensure_signing_key(cluster, "cdi", time.time())
        ring = await ensure_key_ring(cluster, datetime.now(UTC), "cdi")
        bundle = await install_token_keys(cluster, "cdi", NOW)
    token = issue_token(ring.current, upload_payload("vms", "disk"), time.time())
    assert TokenVerifier.from_pem_bundle(bundle).verify_upload(token, time.time()).namespace == "vms"


async def test_without_any_key_the_proxy_says_what_it_waits_for(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "store.db") as cluster:
        with pytest.raises(NoTokenKeys) as caught:
            await install_token_keys(cluster, "cdi", NOW)
    assert caught.value.message == ("no upload token keys in namespace cdi: neither Secret cdi-api-signing-key "
                                    "(made by `cdi apiserver`) nor cdi-upload-token-keys exists")
