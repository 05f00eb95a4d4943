"""`cdi-uploadserver` binds its port before it imports the HTTP stack and the data path: a client that
connects while the program is still starting waits in the accept queue and is answered, instead of
being refused (the upload proxy would retry only 0.25 s later). An address that is not an IP literal,
or a port that is taken, leaves the binding to the server's own start, which reports it. The HTTP stack
is imported with OpenSSL's default CA locations pointed at nothing (aiohttp's unused client contexts load
no CA bundle), and the locations are put back as they were."""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path

import pytest

from importer.uploadserver.main import listen_early, no_default_cas
from tests.support.tls import TestPKI
from tests.upload.support import HOST, upload_env
from tests.upload.test_uploadserver_process import entrypoint, free_port, volumes


def _connect_soon(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((HOST, port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def test_a_connection_made_while_the_server_starts_is_answered(tmp_path: Path, pki: TestPKI,
                                                                mtls: ssl.SSLContext) -> None:
    data, scratch = volumes(tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    process = entrypoint(upload_env(pki, data, scratch, LISTEN_PORT=str(port)))
    try:
        raw = _connect_soon(port, time.monotonic() + 30)
        started_when_connected = "listening on" in log.read_text()
        with mtls.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    finally:
        process.kill()
        process.wait()
    assert not started_when_connected, "the port was only open once the server had started"
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_listen_early_binds_the_configured_ip_and_port(tmp_path: Path, pki: TestPKI) -> None:
    data, scratch = volumes(tmp_path)
    port = free_port()
    listening = listen_early(upload_env(pki, data, scratch, LISTEN_PORT=str(port)))
    assert listening is not None
    with listening:
        assert listening.getsockname()[:2] == (HOST, port)
        with socket.create_connection((HOST, port), timeout=5):
            pass  # accepted by the kernel before anything calls accept()


def test_listen_early_leaves_names_and_taken_ports_to_the_server(tmp_path: Path, pki: TestPKI) -> None:
    data, scratch = volumes(tmp_path)
    assert listen_early(upload_env(pki, data, scratch, LISTEN_ADDRESS="localhost")) is None
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        assert listen_early(upload_env(pki, data, scratch, LISTEN_PORT=str(port))) is None


def test_inside_no_default_cas_a_default_context_trusts_nothing_and_after_it_the_variables_are_back(
        pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = pki.ca_cert
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] == 1
    with no_default_cas():
        inside = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert inside == 0
    assert os.environ["SSL_CERT_FILE"] == str(bundle)
    assert "SSL_CERT_DIR" not in os.environ
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] == 1
