"""Helpers for the upload tests: TLS contexts from the test PKI, in-process upload servers on loopback,
a raw HTTP/1.1 client that can cut a request body at an exact byte, and disk checks.

Upload servers run in-process (`importer.uploadserver.main.UploadServer`) configured through the
same environment contract a pod gets, with real TLS and real qemu-img; the subprocess entrypoint is
covered separately in `test_uploadserver_process.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from importer.uploadserver.config import load_config
from importer.uploadserver.gate import ServerResult
from importer.uploadserver.main import UploadServer
from tests.support.tls import ClientCert, TestPKI
from uploadproxy.resolver import UploadTarget

HOST = "127.0.0.1"


def client_context(pki: TestPKI, cert: ClientCert | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


def upload_env(pki: TestPKI, data: Path, scratch: Path, **extra: str) -> dict[str, str]:
    return {"LISTEN_ADDRESS": HOST, "LISTEN_PORT": "0", "CDI_DATA_PATH": str(data), "CDI_SCRATCH_PATH": str(scratch),
            "CDI_TERMINATION_LOG": str(data.parent / "termination-log"), "TLS_CERT_FILE": str(pki.server_cert),
            "TLS_KEY_FILE": str(pki.server_key), "CLIENT_CERT_FILE": str(pki.ca_cert), **extra}


@dataclass
class ServerHandle:
    server: UploadServer
    data: Path
    scratch: Path

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def disk(self) -> Path:
        return self.data / "disk.img"

    async def result(self, timeout: float = 30) -> ServerResult:
        return await asyncio.wait_for(self.server.wait(), timeout)

    def written(self) -> list[str]:
        """What the volume holds (hidden partial files included)."""
        return sorted(p.name for p in self.data.iterdir())


async def start_server(pki: TestPKI, root: Path, env: Mapping[str, str] | None = None) -> ServerHandle:
    data, scratch = root / "data", root / "scratch"
    data.mkdir(parents=True)
    scratch.mkdir()
    server = UploadServer(load_config(upload_env(pki, data, scratch, **(env or {}))))
    await server.start()
    return ServerHandle(server, data, scratch)


def sha256_prefix(path: Path, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        remaining = path.stat().st_size if length is None else length
        while remaining > 0 and (block := f.read(min(remaining, 1 << 20))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(port: int, context: ssl.SSLContext | None, method: str, target: str, *,
                      headers: Mapping[str, str] | None = None, body: bytes = b"",
                      cut_after: int | None = None) -> RawResponse | None:
    """One HTTP/1.1 request on a fresh connection. With `cut_after`, the connection is aborted after
    that many body bytes (None returned); otherwise the response is read."""
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context,
                                                   server_hostname="localhost" if context else None)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{port}", f"Content-Length: {len(body)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if cut_after is not None:
            writer.write(body[:cut_after])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()
            return None
        writer.write(body)
        await writer.drain()
        return _parse(await reader.read())
    finally:
        writer.transport.abort()


def _parse(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)


class TableResolver:
    """An `UploadTargetResolver` over a dict: "<namespace>/<pvc>" → a target, or an error to raise
    (a list of answers is consumed one per call, the last one repeating)."""

    def __init__(self, table: Mapping[str, object]) -> None:
        self.table = dict(table)
        self.calls = 0

    async def resolve(self, namespace: str, pvc: str) -> UploadTarget:
        from uploadproxy.resolver import pvc_missing

        self.calls += 1
        answer = self.table.get(f"{namespace}/{pvc}", pvc_missing(pvc))
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, UploadTarget)
        return answer
