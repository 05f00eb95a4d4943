"""The upload server's TLS context follows its files: after the control plane rewrites the certificate and
the client CA bundle, a new connection gets the new certificate and is checked against the new bundle,
while a connection opened before keeps working (an upload in flight is not cut)."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from cdi.pki import KeyPair, issue, join_bundle, new_ca
from importer.uploadserver.config import TLSFiles
from importer.uploadserver.security import server_context, subject_common_names

NOW = datetime.now(UTC)
CA1, CA2 = new_ca("ca-one", NOW), new_ca("ca-two", NOW)


def write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # as kubelet swaps a Secret volume: a new inode


def install(tls: TLSFiles, server: KeyPair, trust: bytes) -> None:
    write(tls.key, server.key_pem)
    write(tls.cert, server.cert_pem)
    write(tls.client_ca, trust)


def client(tmp: Path, name: str, ca: KeyPair) -> ssl.SSLContext:
    pair = issue(ca, "client.upload-server.cdi.kubevirt.io", NOW, client=True)
    (tmp / f"{name}.crt").write_bytes(pair.cert_pem)
    (tmp / f"{name}.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context(cadata=join_bundle([CA1.cert_pem, CA2.cert_pem]).decode())
    context.load_cert_chain(tmp / f"{name}.crt", tmp / f"{name}.key")
    return context


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every line with the verified client's CN ("-" when it gave no certificate)."""
    names = subject_common_names(writer.get_extra_info("peercert"))
    try:
        while await reader.readline():
            writer.write((names[0] if names else "-").encode() + b"\n")
            await writer.drain()
    except (ssl.SSLError, ConnectionError):
        pass
    writer.close()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """The server's answer, or "refused" when it ended the connection (TLS 1.3 clients learn it here)."""
    try:
        writer.write(b"who\n")
        await writer.drain()
        return (await reader.readline()).decode().strip() or "refused"
    except (ssl.SSLError, ConnectionError):
        return "refused"


async def close(*connections: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    for _, writer in connections:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


def issuer_of(writer: asyncio.StreamWriter) -> str:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


async def test_new_connections_get_the_renewed_certificate_and_bundle_while_open_ones_go_on(tmp_path: Path) -> None:
    tls = TLSFiles(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")
    install(tls, issue(CA1, "server", NOW, names=("127.0.0.1",)), CA1.cert_pem)
    old_client, new_client = client(tmp_path, "old", CA1), client(tmp_path, "new", CA2)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(tls))
    port = server.sockets[0].getsockname()[1]
    try:
        before = await asyncio.open_connection("127.0.0.1", port, ssl=old_client, server_hostname="127.0.0.1")
        assert issuer_of(before[1]) == "CN=ca-one"
        assert await ask(*before) == "client.upload-server.cdi.kubevirt.io"

        install(tls, issue(CA2, "server", NOW, names=("127.0.0.1",)), CA2.cert_pem)

        after = await asyncio.open_connection("127.0.0.1", port, ssl=new_client, server_hostname="127.0.0.1")
        assert issuer_of(after[1]) == "CN=ca-two"
        assert await ask(*after) == "client.upload-server.cdi.kubevirt.io"  # checked against the new bundle
        stale = await asyncio.open_connection("127.0.0.1", port, ssl=old_client, server_hostname="127.0.0.1")
        assert await ask(*stale) == "refused"  # the old CA is no longer in the bundle: its client is not trusted
        assert await ask(*before) == "client.upload-server.cdi.kubevirt.io"  # the open connection goes on
        await close(before, after, stale)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_half_written_pair_keeps_the_previous_certificate(tmp_path: Path) -> None:
    tls = TLSFiles(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")
    install(tls, issue(CA1, "server", NOW, names=("127.0.0.1",)), CA1.cert_pem)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(tls))
    port = server.sockets[0].getsockname()[1]
    try:
        write(tls.cert, issue(CA2, "server", NOW, names=("127.0.0.1",)).cert_pem)  # its key not written yet
        conn = await asyncio.open_connection("127.0.0.1", port, ssl=client(tmp_path, "c", CA1),
                                             server_hostname="127.0.0.1")
        assert issuer_of(conn[1]) == "CN=ca-one"
        await close(conn)
    finally:
        server.close()
        await server.wait_closed()
