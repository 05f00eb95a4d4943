"""Front-proxy authentication and the access question, as pure functions (certificates in, users out)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cdi.apiserver.frontproxy import RequestHeaderAuth, UserInfo, access_review, authenticate, check_access
from cdi.cluster.errors import Forbidden, Unauthorized
from tests.support.tls import TestPKI, make_client_cert, make_pki

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("front-proxy"))


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def config(front: TestPKI, **data: str) -> RequestHeaderAuth:
    auth = RequestHeaderAuth.from_config_map({"requestheader-client-ca-file": front.ca_pem().decode(), **data})
    assert auth is not None
    return auth


def test_the_config_map_gives_names_and_headers(front: TestPKI) -> None:
    auth = config(front, **{"requestheader-allowed-names": '["front-proxy-client"]',
                            "requestheader-username-headers": '["X-Remote-User"]',
                            "requestheader-group-headers": '["X-Remote-Group"]',
                            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'})
    assert auth.allowed_names == {"front-proxy-client"} and auth.username_headers == ("X-Remote-User",)
    assert RequestHeaderAuth.from_config_map({"client-ca-file": "..."}) is None


def test_the_user_groups_and_extras_come_from_the_headers(front: TestPKI, tmp_path: Path) -> None:
    proxy = make_client_cert(front, "front-proxy-client", tmp_path)
    headers = [("x-remote-user", "alice"), ("X-Remote-Group", "devs"), ("X-Remote-Group", "system:authenticated"),
               ("X-Remote-Extra-Scopes", "a"), ("X-Remote-Extra-Scopes", "b"), ("X-Remote-Extra-Acme.com%2fteam", "x")]
    user = authenticate(der(proxy.cert), headers, config(front, **{"requestheader-allowed-names": "[]"}), NOW)
    assert user == UserInfo("alice", ("devs", "system:authenticated"), {"scopes": ("a", "b"), "acme.com/team": ("x",)})


def test_only_allowed_names_of_the_request_header_ca_authenticate(front: TestPKI, pki: TestPKI,
                                                                  tmp_path: Path) -> None:
    auth = config(front, **{"requestheader-allowed-names": '["front-proxy-client"]'})
    headers = [("X-Remote-User", "alice")]
    for cert in (make_client_cert(front, "someone-else", tmp_path).cert,
                 make_client_cert(pki, "front-proxy-client", tmp_path).cert):  # right name, wrong CA
        with pytest.raises(Unauthorized):
            authenticate(der(cert), headers, auth, NOW)
    with pytest.raises(Unauthorized):
        authenticate(None, headers, auth, NOW)
    proxy = make_client_cert(front, "front-proxy-client", tmp_path).cert
    with pytest.raises(Unauthorized):
        authenticate(der(proxy), headers, auth, NOW + datetime.timedelta(days=30))  # expired
    with pytest.raises(Unauthorized):
        authenticate(der(proxy), headers, None, NOW)  # no front proxy configured: nobody authenticates


def test_the_access_question_and_its_refusal() -> None:
    user = UserInfo("bob", ("devs",), {"scopes": ("a",)})
    review = access_review(user, "vms")
    assert review["spec"] == {"user": "bob", "groups": ["devs"], "extra": {"scopes": ["a"]},
                              "resourceAttributes": {"namespace": "vms", "verb": "create",
                                                     "group": "upload.cdi.kubevirt.io", "version": "v1beta1",
                                                     "resource": "uploadtokenrequests"}}
    check_access({**review, "status": {"allowed": True}}, user, "vms")
    with pytest.raises(Forbidden, match=r'^uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "bob" '
                                        r'cannot create resource "uploadtokenrequests" in API group '
                                        r'"upload.cdi.kubevirt.io" in the namespace "vms"$'):
        check_access({**review, "status": {"allowed": False}}, user, "vms")
