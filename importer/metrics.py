"""The importer's progress endpoint: `kubevirt_cdi_import_progress_total{ownerUID=...}` served over
HTTPS with a freshly generated self-signed certificate, as upstream's importer does on :8443. The
address comes from CDI_METRICS_ADDR so several local importers can run side by side (port 0 picks a
free port; "off" disables the endpoint).

Nothing here delays the import: `importer.main` starts the server beside the transfer, and the
certificate (with the `cryptography` import it needs) is made on a worker thread while the first
request is on the wire."""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cdi.contracts.metrics import IMPORT_PROGRESS, METRICS_PATH, progress_line
from importer.progress import Progress

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("importer")


def self_signed_context(common_name: str = "cdi-importer") -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7)).sign(key, hashes.SHA256()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context.load_cert_chain(cert_path, key_path)
    return context


def _prepare() -> ssl.SSLContext:
    """The server's imports and certificate: the slow part of starting, done off the event loop."""
    import aiohttp.web  # noqa: F401

    return self_signed_context()


def parse_addr(addr: str) -> tuple[str, int] | None:
    if addr in ("", "off"):
        return None
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    def __init__(self, progress: Progress, owner_uid: str, addr: str) -> None:
        self._progress = progress
        self._owner_uid = owner_uid
        self._addr = parse_addr(addr)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = (f"# HELP {IMPORT_PROGRESS} The import progress in percentage\n"
                f"# TYPE {IMPORT_PROGRESS} counter\n"
                f"{progress_line(IMPORT_PROGRESS, self._owner_uid, self._progress.percent)}\n")
        from aiohttp import web

        return web.Response(text=body, content_type="text/plain")

    async def start(self) -> None:
        if self._addr is None:
            return
        context = await asyncio.to_thread(_prepare)
        from aiohttp import web  # imported by `_prepare`

        app = web.Application()
        app.router.add_get(METRICS_PATH, self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._addr[0], self._addr[1], ssl_context=context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._addr[1]
        log.info("serving progress on port %d", self.port)

    async def start_beside(self) -> asyncio.Task[None]:
        """Start serving in the background; a failure to serve is logged, never fails the import."""

        async def guarded() -> None:
            try:
                await self.start()
            except (OSError, ssl.SSLError) as e:
                log.warning("progress endpoint unavailable: %s", e)

        task = asyncio.create_task(guarded())
        await asyncio.sleep(0)  # let it begin (and hand the certificate to its thread) before the import runs
        return task

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
