"""The HTTP source through a real forward proxy (tinyproxy): https through a CONNECT tunnel with the
source's CA, plain http in absolute form, proxy credentials from the proxy URL, NO_PROXY as Go's
client reads it; and the proxy rules themselves."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi.proxyenv import bypasses_proxy
from importer.sources.httpwire import WireError, parse_target, proxy_for
from tests.importer.conftest import Runner
from tests.support.catalog import ImageSet
from tests.support.nginx import NginxServer
from tests.support.tinyproxy import TinyProxy
from tests.support.tls import TestPKI

IMAGE = "disk.qcow2.gz"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[TinyProxy]:
    with TinyProxy(tmp_path / "tinyproxy") as server:
        yield server


def imported(run, images: ImageSet) -> bool:  # type: ignore[no-untyped-def]
    return run.returncode == 0 and run.message is not None and run.message.message == "Import Complete" \
        and run.disk_sha256() == images.reference_sha256


def test_https_goes_through_a_connect_tunnel(proxy: TinyProxy, nginx: NginxServer, pki: TestPKI, images: ImageSet,
                                            tmp_path: Path, run_importer: Runner) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(pki.ca_cert, certs / "ca.pem")
    url = nginx.url(IMAGE, tls=True)
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, "IMPORTER_CERT_DIR": str(certs),
                        "HTTPS_PROXY": proxy.url})
    assert imported(run, images), run.log
    assert f"CONNECT 127.0.0.1:{parse_target(url).port}" in proxy.log


def test_http_goes_through_the_proxy_in_absolute_form(proxy: TinyProxy, nginx: NginxServer, images: ImageSet,
                                                     run_importer: Runner) -> None:
    url = nginx.url(IMAGE)
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": url, "http_proxy": proxy.url})
    assert imported(run, images), run.log
    assert f"GET {url} HTTP/1.1" in proxy.log


def test_wrong_proxy_credentials_are_reported(proxy: TinyProxy, nginx: NginxServer, run_importer: Runner) -> None:
    bad = proxy.url.replace("proxy-secret", "nope")
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url(IMAGE, tls=True),
                        "HTTPS_PROXY": bad, "INSECURE_TLS": "true"})
    assert run.returncode == 1
    assert run.message is not None and "refused the tunnel" in run.message.message
    assert " 401 " in run.message.message or " 407 " in run.message.message  # tinyproxy answers 401
    assert "proxy-secret" not in run.message.message and "nope" not in run.message.message


def test_no_proxy_sends_the_request_direct(nginx: NginxServer, images: ImageSet, run_importer: Runner) -> None:
    run = run_importer({"IMPORTER_SOURCE": "http", "IMPORTER_ENDPOINT": nginx.url(IMAGE),
                        "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "localhost,127.0.0.0/8"})
    assert imported(run, images), run.log


@pytest.mark.parametrize(("host", "port", "no_proxy", "bypass"), [
    ("disks.example.com", 80, "*", True),
    ("disks.example.com", 80, "example.com", True),
    ("disks.example.com", 80, ".example.com", True),
    ("example.com", 80, ".example.com", True),
    ("badexample.com", 80, "example.com", False),
    ("disks.example.com", 443, "example.com:80", False),
    ("disks.example.com", 80, "example.com:80", True),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("11.1.2.3", 80, "10.0.0.0/8", False),
    ("::1", 80, "[::1]", True),
    ("fd00::5", 80, "fd00::/64", True),
    ("disks.example.com", 80, "", False),
])
def test_no_proxy_rules(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_proxy_choice_from_the_environment() -> None:
    https = parse_target("https://registry.example.com/disk.img")
    assert proxy_for(https, {"HTTPS_PROXY": "http://p:3128"}) == parse_target("http://p:3128")
    assert proxy_for(https, {"https_proxy": "p:3128"}) == parse_target("http://p:3128")  # scheme optional
    assert proxy_for(https, {"HTTP_PROXY": "http://p:3128"}) is None  # http's proxy is not https's
    assert proxy_for(https, {"HTTPS_PROXY": "http://p:3128", "no_proxy": "example.com"}) is None
    with pytest.raises(WireError, match="only http:// proxies"):
        proxy_for(https, {"HTTPS_PROXY": "https://p:3128"})


def test_url_parsing() -> None:
    target = parse_target("https://u%40x:p%3Aw@[fd00::1]:8443/a/b.img?sig=1")
    assert (target.host, target.port, target.target) == ("fd00::1", 8443, "/a/b.img?sig=1")
    assert (target.username, target.password) == ("u@x", "p:w")
    assert target.url == "https://[fd00::1]:8443/a/b.img?sig=1"  # credentials never in what is logged
    assert parse_target("http://h").target == "/"
    for bad in ("ftp://h/x", "http:///x", "http://h:99999/x"):
        with pytest.raises(WireError):
            parse_target(bad)
