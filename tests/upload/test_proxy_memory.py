"""Ten 64 MiB uploads at once through one proxy process, each to its own upload server: all land
byte-identical and the proxy's peak RSS stays bounded (it streams; it never holds an image)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

from cdi.tokens import KeyRing, issue_token, upload_payload
from tests.support.tls import ClientCert, TestPKI
from tests.upload.conftest import StartServer
from tests.upload.support import HOST, sha256_prefix

MiB = 1 << 20
UPLOADS = 10
SIZE = 64 * MiB
PEAK_RSS_LIMIT_KIB = 150 * 1024


def write_image(path: Path) -> None:
    """64 MiB: a random MiB every 8 MiB, zeros between (cheap to write sparse, still 64 MiB on the wire)."""
    rng = random.Random(42)
    with path.open("wb") as f:
        for mib in range(SIZE // MiB):
            f.write(rng.randbytes(MiB) if mib % 8 == 0 else bytes(MiB))


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


async def start_proxy(pki: TestPKI, client: ClientCert, ring: KeyRing, targets: dict[str, str],
                      tmp_path: Path) -> tuple[asyncio.subprocess.Process, int]:
    keys = tmp_path / "token-keys.pem"
    keys.write_bytes(ring.public_bundle_pem())
    env = {**os.environ, "LISTEN_ADDRESS": HOST, "LISTEN_PORT": "0", "SERVER_CERT_FILE": str(pki.server_cert),
           "SERVER_KEY_FILE": str(pki.server_key), "UPLOAD_CLIENT_CERT_FILE": str(client.cert),
           "UPLOAD_CLIENT_KEY_FILE": str(client.key), "UPLOAD_SERVER_CA_FILE": str(pki.ca_cert),
           "APISERVER_PUBLIC_KEY_FILE": str(keys), "TEST_UPLOAD_TARGETS": json.dumps(targets)}
    with (tmp_path / "proxy.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.upload.proxy_process", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=log, cwd=Path(__file__).parents[2])
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.strip().isdigit(), (tmp_path / "proxy.log").read_text()
    return process, int(line)


async def curl_upload(port: int, token: str, image: Path, ca: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--cacert", str(ca), "-H", f"Authorization: Bearer {token}", "-X", "POST", "-T", str(image),
        "-o", "/dev/null", "-w", "%{http_code}", f"https://{HOST}:{port}/v1beta1/upload",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return out.decode() + err.decode()


async def test_ten_concurrent_uploads_with_bounded_proxy_memory(
        pki: TestPKI, proxy_client_cert: ClientCert, key_ring: KeyRing, upload_server: StartServer,
        tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    write_image(image)
    servers = [await upload_server() for _ in range(UPLOADS)]
    targets = {f"default/disk{i}": server.url for i, server in enumerate(servers)}
    process, port = await start_proxy(pki, proxy_client_cert, key_ring, targets, tmp_path)
    try:
        baseline = peak_rss_kib(process.pid)
        now = time.time()
        results = await asyncio.gather(*(
            curl_upload(port, issue_token(key_ring.current, upload_payload("default", f"disk{i}"), now), image,
                        pki.ca_cert) for i in range(UPLOADS)))
        peak = peak_rss_kib(process.pid)
    finally:
        process.terminate()
        await process.wait()
    assert results == ["200"] * UPLOADS
    expected = sha256_prefix(image)
    for server in servers:
        assert (await server.result()).exit_code == 0
        assert sha256_prefix(server.disk) == expected
    print(f"proxy peak RSS {peak // 1024} MiB (idle {baseline // 1024} MiB) for {UPLOADS} x {SIZE // MiB} MiB")
    assert peak < PEAK_RSS_LIMIT_KIB, f"proxy peak RSS {peak // 1024} MiB"
