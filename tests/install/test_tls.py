"""The install's certificates: who signs what, for which names, and when a stored one is reused."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cdi.contracts import deployment as dep
from cdi.contracts import upload_protocol as up
from cdi.controllers.upload import credentials as controller_credentials
from cdi.install.tls import UPLOADSERVER_CA_SECRET, Credentials, credentials, tls_objects
from cdi.pki import KeyPair, issue
from tests.install.conftest import NAMESPACE, NOW, of_kind


def dns_names(pair: KeyPair) -> set[str]:
    return set(pair.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def usage(pair: KeyPair) -> list[x509.ObjectIdentifier]:
    return list(pair.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_serving_certificates_name_the_services_and_chain_to_the_install_ca(creds: Credentials) -> None:
    for pair, service in ((creds.apiserver, dep.APISERVER_SERVICE), (creds.uploadproxy, dep.UPLOADPROXY_SERVICE)):
        pair.certificate.verify_directly_issued_by(creds.ca.certificate)
        assert f"{service}.{NAMESPACE}.svc" in dns_names(pair)
        assert usage(pair) == [ExtendedKeyUsageOID.SERVER_AUTH]
        assert pair.expires() - NOW > datetime.timedelta(days=300)


def test_the_proxys_client_certificate_is_signed_by_the_upload_server_ca(creds: Credentials) -> None:
    client = creds.uploadserver_client
    client.certificate.verify_directly_issued_by(creds.uploadserver_ca.certificate)
    assert client.certificate.subject.rfc4514_string() == f"CN={up.UPLOAD_CLIENT_NAME}"
    assert usage(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert creds.uploadserver_ca.certificate.subject != creds.ca.certificate.subject


def test_stored_credentials_are_reused_while_good(creds: Credentials) -> None:
    assert credentials(NAMESPACE, NOW, creds.pairs()) == creds


def test_another_namespace_keeps_the_cas_and_reissues_the_serving_certificates(creds: Credentials) -> None:
    moved = credentials("elsewhere", NOW, creds.pairs())
    assert (moved.ca, moved.uploadserver_ca, moved.uploadserver_client) == (
        creds.ca, creds.uploadserver_ca, creds.uploadserver_client)
    assert moved.apiserver != creds.apiserver and "cdi-api.elsewhere.svc" in dns_names(moved.apiserver)


def test_a_certificate_near_its_end_is_renewed(creds: Credentials) -> None:
    later = NOW + datetime.timedelta(days=350)
    renewed = credentials(NAMESPACE, later, creds.pairs())
    assert renewed.ca == creds.ca and renewed.apiserver != creds.apiserver


def test_a_new_ca_reissues_everything_under_it(creds: Credentials) -> None:
    stored = {k: v for k, v in creds.pairs().items() if k != "ca"}
    fresh = credentials(NAMESPACE, NOW, stored)
    assert fresh.ca != creds.ca and fresh.apiserver != creds.apiserver and fresh.uploadproxy != creds.uploadproxy
    fresh.apiserver.certificate.verify_directly_issued_by(fresh.ca.certificate)


def test_a_certificate_whose_key_is_not_its_own_is_replaced(creds: Credentials) -> None:
    other = issue(creds.ca, "other", NOW, names=("x",))
    stored = {**creds.pairs(), "apiserver": KeyPair(creds.apiserver.cert_pem, other.key_pem)}
    assert credentials(NAMESPACE, NOW, stored).apiserver != stored["apiserver"]


def test_a_key_that_does_not_parse_is_an_error_not_a_silent_rotation(creds: Credentials) -> None:
    with pytest.raises(ValueError):
        credentials(NAMESPACE, NOW, {**creds.pairs(), "ca": KeyPair(creds.ca.cert_pem, b"not a key")})


def secret_data(doc: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in doc["data"].items()}


def test_secrets_and_bundles_carry_the_pairs(creds: Credentials, documents: list[dict[str, Any]]) -> None:
    secrets, maps = of_kind(documents, "Secret"), of_kind(documents, "ConfigMap")
    api = secret_data(secrets[dep.APISERVER_SERVING_SECRET])
    assert (api["tls.crt"], api["tls.key"], api["ca.crt"]) == (creds.apiserver.cert_pem, creds.apiserver.key_pem,
                                                              creds.ca.cert_pem)
    assert secrets[dep.APISERVER_SERVING_SECRET]["type"] == "kubernetes.io/tls"
    assert maps[dep.APISERVER_CA_BUNDLE]["data"]["ca-bundle.crt"] == creds.ca.cert_pem.decode()
    assert secret_data(secrets[dep.UPLOADPROXY_SERVING_SECRET])["tls.crt"] == creds.uploadproxy.cert_pem
    # No Secret but the controller's holds a CA key.
    holders = {name for name, doc in secrets.items()
               if creds.ca.key_pem in secret_data(doc).values() or creds.uploadserver_ca.key_pem in secret_data(doc).values()}
    assert holders == {UPLOADSERVER_CA_SECRET}


def test_the_controller_adopts_the_rendered_upload_server_ca(creds: Credentials) -> None:
    """`cdi.controllers.upload.credentials` reads the CA Secret by this name and layout, and signs with it."""
    assert UPLOADSERVER_CA_SECRET == controller_credentials.CA_SECRET
    (secret,) = [d for d in tls_objects(NAMESPACE, creds) if d["metadata"]["name"] == UPLOADSERVER_CA_SECRET]
    assert secret["type"] == "Opaque"  # as the controller creates it, so neither side's write is refused
    data = controller_credentials.decode(secret)
    adopted = KeyPair(data["tls.crt"], data["tls.key"])
    assert adopted == creds.uploadserver_ca
    server = issue(adopted, "cdi-upload-x.ns.svc", NOW, names=("cdi-upload-x.ns.svc",))
    server.certificate.verify_directly_issued_by(creds.uploadserver_ca.certificate)
