"""Which proxy the Kubernetes client uses, settled once per client: the kubeconfig's `proxy-url` first,
then the environment's proxy for the server's scheme, unless `NO_PROXY` exempts the server."""

from __future__ import annotations

from kubernetes_asyncio.client import Configuration

from cdi.kube.transport import proxy_for


def _configuration(host: str, proxy: str | None = None) -> Configuration:
    configuration = Configuration()
    configuration.host = host
    configuration.proxy = proxy
    return configuration


def test_the_kubeconfig_proxy_wins_over_the_environment() -> None:
    environ = {"HTTPS_PROXY": "http://env-proxy:3128"}
    assert proxy_for(_configuration("https://api.example.com:6443", "http://kubeconfig-proxy:8080"),
                     environ) == "http://kubeconfig-proxy:8080"


def test_the_environment_proxy_follows_the_server_scheme() -> None:
    environ = {"HTTPS_PROXY": "http://secure:3128", "HTTP_PROXY": "http://plain:3128"}
    assert proxy_for(_configuration("https://api.example.com:6443"), environ) == "http://secure:3128"
    assert proxy_for(_configuration("http://api.example.com:8080"), environ) == "http://plain:3128"
    assert proxy_for(_configuration("https://api.example.com:6443"), {}) is None


def test_upper_case_names_win_as_in_go() -> None:
    environ = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128"}
    assert proxy_for(_configuration("https://api.example.com"), environ) == "http://upper:3128"
    assert proxy_for(_configuration("https://api.example.com"), {"https_proxy": "lower:3128"}) == "http://lower:3128"


def test_a_server_without_a_port_is_compared_on_its_scheme_default() -> None:
    environ = {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example.com:443"}
    assert proxy_for(_configuration("https://api.example.com"), environ) is None
    assert proxy_for(_configuration("https://api.example.com:6443"), environ) == "http://p:1"


def test_no_proxy_exempts_addresses_and_ranges() -> None:
    server = _configuration("https://10.96.0.1:443")
    for no_proxy in ("10.96.0.1", "10.0.0.0/8", "10.96.0.1:443"):
        assert proxy_for(server, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}) is None, no_proxy
    assert proxy_for(server, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "192.168.0.0/16"}) == "http://p:1"


def test_no_proxy_exempts_hosts_domains_ports_and_everything() -> None:
    server = _configuration("https://api.cluster.example.com:6443")
    for no_proxy in ("api.cluster.example.com", ".example.com", "example.com", "cluster.example.com:6443",
                     "other.org, *", " foo , API.cluster.example.com "):
        assert proxy_for(server, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}) is None, no_proxy
    for no_proxy in ("example.org", "cluster.example.com:443", "xample.com", ""):
        assert proxy_for(server, {"HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}) == "http://p:1", no_proxy
