"""The control plane's certificates: a CA it owns, and the server and client certificates it issues
for the upload proxy and upload servers (mutual TLS between them). Pure cryptography with PEM in and
out, so the keys can live in Secrets; `cdi.controllers.upload.certs` decides when to issue and rotate.
Keys are EC P-256: fast to generate, accepted everywhere TLS 1.2+ is."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import ip_address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates start a little before they are made, so a peer whose clock is slightly behind accepts them.
BACKDATE = datetime.timedelta(minutes=5)
_PEM_END = b"-----END CERTIFICATE-----"


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def expires(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def made(self) -> datetime.datetime:
        """When the certificate was made (its start, less the backdating `new_ca` and `issue` apply)."""
        return made(self.cert_pem)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_ca(common_name: str, now: datetime.datetime, days: int = 3650, *,
           lifetime: datetime.timedelta | None = None) -> KeyPair:
    """A self-signed CA valid from a little before `now` for `lifetime` (when given) or `days`."""
    key = _key()
    valid_to = now + (lifetime if lifetime is not None else datetime.timedelta(days=days))
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(valid_to)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue(ca: KeyPair, common_name: str, now: datetime.datetime, *, names: tuple[str, ...] = (),
          client: bool = False, days: int = 30, lifetime: datetime.timedelta | None = None) -> KeyPair:
    """A leaf certificate signed by `ca`: a server certificate for `names`, or a client certificate, valid
    for `lifetime` (when given) or `days`, and never past the end of `ca` (a chain is only as good as its
    CA, so a leaf that outlived it would fail verification anyway)."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    valid_from = now - BACKDATE
    valid_to = min(now + (lifetime if lifetime is not None else datetime.timedelta(days=days)), ca.expires())
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.certificate.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(valid_from).not_valid_after(valid_to)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if names:
        builder = builder.add_extension(_san(names), critical=False)
    return KeyPair(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), _pem_key(key))


def needs_renewal(pair: KeyPair, now: datetime.datetime, *, before: datetime.timedelta) -> bool:
    return pair.expires() - now < before


# Certificate bundles (the CAs a peer trusts, as one PEM file), and what a leaf was signed by.

def split_bundle(bundle: bytes) -> list[bytes]:
    """Each certificate of a PEM bundle, in order, as its own PEM."""
    return [block.strip() + b"\n" + _PEM_END + b"\n" for block in bundle.split(_PEM_END)[:-1]]


def join_bundle(certs: list[bytes]) -> bytes:
    return b"".join(cert.strip() + b"\n" for cert in certs)


def made(cert_pem: bytes) -> datetime.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_before_utc + BACKDATE


def expiry(cert_pem: bytes) -> datetime.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether the certificate `cert_pem` was signed by the CA `ca_pem` (its key, not merely its name)."""
    try:
        x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def subject_alt_names(cert_pem: bytes) -> tuple[str, ...]:
    """The DNS names and IP addresses a certificate is for, as `issue(names=...)` takes them."""
    try:
        san = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return (*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))
