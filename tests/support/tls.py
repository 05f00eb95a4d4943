"""A throw-away PKI for tests: a CA, a loopback server certificate and client certificates.

`make_pki` writes PEM files into a directory; `tests/support/nginx.py` serves HTTPS with the server
pair and clients verify against `ca_cert`. `make_client_cert` issues further certificates from the
same CA for mutual-TLS tests. EC P-256 keys keep generation in the low milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files making up a test CA and one server certificate."""

    __test__ = False  # not a pytest test class despite the name

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server_chain: Path  # server certificate followed by the CA certificate

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()


@dataclass(frozen=True)
class ClientCert:
    """A client certificate issued by the test CA (for mutual TLS)."""

    common_name: str
    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pycdi tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: tuple[str, ...],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(directory: Path, *, server_names: tuple[str, ...] = LOOPBACK_NAMES) -> TestPKI:
    """Create a CA and a server certificate valid for `server_names`, as PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_cert = (
        _builder(_name("pycdi test CA"), _name("pycdi test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert, server_key = _leaf(ca_cert, ca_key, server_names[0], ExtendedKeyUsageOID.SERVER_AUTH, server_names)
    pki = TestPKI(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        server_chain=directory / "server-chain.crt",
    )
    pki.ca_cert.write_bytes(_pem(ca_cert))
    _write_key(pki.ca_key, ca_key)
    pki.server_cert.write_bytes(_pem(server_cert))
    pki.server_chain.write_bytes(_pem(server_cert) + _pem(ca_cert))
    _write_key(pki.server_key, server_key)
    return pki


def make_client_cert(pki: TestPKI, common_name: str, directory: Path | None = None) -> ClientCert:
    """Issue a client-auth certificate with CN `common_name` from the test CA."""
    target = directory or pki.directory
    target.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not an EC private key")
    cert, key = _leaf(ca_cert, ca_key, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, ())
    stem = "client-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in common_name)
    client = ClientCert(common_name=common_name, cert=target / f"{stem}.crt", key=target / f"{stem}.key")
    client.cert.write_bytes(_pem(cert))
    _write_key(client.key, key)
    return client
