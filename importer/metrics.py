"""The importer's progress endpoint: `kubevirt_cdi_import_progress_total{ownerUID=...}` (and our byte
counters `pycdi_transfer_bytes_done`/`_total`, see `cdi.contracts.metrics`) served over
HTTPS with a freshly generated self-signed certificate, as upstream's importer does on :8443. The
address comes from CDI_METRICS_ADDR so several local importers can run side by side (port 0 picks a
free port; "off" disables the endpoint).

Nothing here delays the import: `importer.main` starts the server beside the transfer. The certificate
is made when the first scraper connects, on a worker thread (with the `cryptography` import it needs,
~0.1 CPU-s: a tenth of a short import's CPU, spent only if someone scrapes); until then a connection is
held without being read, so the client's TLS hello waits in the socket for the TLS layer. The server
is asyncio streams with h11 for HTTP/1.1 framing (keep-alive, bounded request heads, an idle timeout
per connection): it answers `GET|HEAD /metrics` and nothing else (404 for other paths, 405 for other
methods).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cdi.contracts.metrics import (
    IMPORT_PROGRESS,
    IMPORT_PROGRESS_HELP,
    METRICS_PATH,
    progress_line,
    transfer_lines,
)
from importer.progress import Progress

if TYPE_CHECKING:  # imported where a scraper is served: h11 costs ~25 ms of start-up (regexes it compiles)
    import h11

log = logging.getLogger("importer")
IDLE_TIMEOUT = 30.0


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


def progress_page(progress: Progress, owner_uid: str) -> bytes:
    """The metrics page: upstream's percentage, then our byte counters (the total only when known).
    The upload server serves the same page on its own port."""
    lines = [f"# HELP {IMPORT_PROGRESS} {IMPORT_PROGRESS_HELP}", f"# TYPE {IMPORT_PROGRESS} counter",
             progress_line(IMPORT_PROGRESS, owner_uid, progress.percent),
             *transfer_lines(owner_uid, progress.done, progress.total)]
    return ("\n".join(lines) + "\n").encode()


def parse_addr(addr: str) -> tuple[str, int] | None:
    if addr in ("", "off"):
        return None
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    def __init__(self, progress: Progress, owner_uid: str, addr: str, *,
                 certificate: Callable[[], ssl.SSLContext] = self_signed_context) -> None:
        self._progress = progress
        self._certificate = certificate
        self._owner_uid = owner_uid
        self._addr = parse_addr(addr)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._tls: asyncio.Future[ssl.SSLContext] | None = None
        self.port: int | None = None

    def body(self) -> bytes:
        return progress_page(self._progress, self._owner_uid)

    async def start(self) -> None:
        if self._addr is None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AwaitingTls(self), self._addr[0], self._addr[1])
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._addr[1]
        log.info("serving progress on port %d", self.port)

    def _accepted(self, transport: asyncio.Transport) -> None:
        task = asyncio.get_running_loop().create_task(self._upgrade(transport))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _context(self) -> ssl.SSLContext:
        """The certificate, made once, when the first connection needs it."""
        if self._tls is None:
            self._tls = asyncio.ensure_future(asyncio.to_thread(self._certificate))
        return await asyncio.shield(self._tls)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        """TLS on a held connection (the handshake bounded as before), then the HTTP exchange."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        tls: asyncio.Transport | None = None
        try:
            try:
                context = await self._context()
            except Exception as e:  # no certificate: nothing can be served, the import goes on
                log.warning("progress endpoint unavailable: %s", e)
                return
            # A scraper that went away or spoke nonsense: nothing to tell it.
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                tls = await loop.start_tls(transport, protocol, context, server_side=True,
                                           ssl_handshake_timeout=IDLE_TIMEOUT)
        finally:
            if tls is None:  # also when stopped while waiting for the certificate
                transport.abort()
        if tls is None:
            return
        protocol.connection_made(tls)
        await self._serve(reader, asyncio.StreamWriter(tls, protocol, reader, loop))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h11

        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._exchange(reader, writer)
        except (OSError, TimeoutError, ssl.SSLError, h11.ProtocolError):
            pass  # a scraper that went away or spoke nonsense: nothing to tell it
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h11

        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    data = await reader.read(16 << 10)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                writer.write(self._answer(conn, event))
                await writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return

    def _answer(self, conn: h11.Connection, request: h11.Request) -> bytes:
        import h11

        path = request.target.split(b"?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            status, body = 405, b"method not allowed\n"
        elif path != METRICS_PATH.encode():
            status, body = 404, b"not found\n"
        else:
            status, body = 200, self.body()
        headers = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Content-Length", str(len(body)))]
        out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        if request.method != b"HEAD":
            out += conn.send(h11.Data(data=body)) or b""
        return out + (conn.send(h11.EndOfMessage()) or b"")

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
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()


class _AwaitingTls(asyncio.Protocol):
    """A fresh connection, not read until TLS starts on it: what the client sends first (its TLS hello)
    stays in the socket for the TLS layer instead of being read as plain data while the certificate is
    made. `MetricsServer._upgrade` then replaces this protocol (`loop.start_tls`)."""

    def __init__(self, server: MetricsServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._server._accepted(transport)
