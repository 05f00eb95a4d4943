"""The Kubernetes client through a forward proxy (a real tinyproxy on loopback, CONNECT tunnels): the
kubeconfig's `proxy-url`, or `HTTPS_PROXY` unless `NO_PROXY` exempts the server, settled once when the
client is made (client-go's behaviour), not looked up again on every request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cdi.kube.client import connect
from tests.support.kubecluster import KubeCluster
from tests.support.tinyproxy import TinyProxy


def _tunnels(proxy: TinyProxy, port: int) -> int:
    return proxy.log.count(f"CONNECT 127.0.0.1:{port}") + proxy.log.count(f"CONNECT localhost:{port}")


def _server_port(kube_cluster: KubeCluster) -> int:
    config = yaml.safe_load(kube_cluster.kubeconfig_path.read_text())
    return int(config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[TinyProxy]:
    with TinyProxy(tmp_path / "proxy") as running:
        yield running


@pytest.fixture(autouse=True)
def _no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


async def test_the_kubeconfig_proxy_url_carries_every_request(kube_cluster: KubeCluster, proxy: TinyProxy,
                                                              tmp_path: Path) -> None:
    config = yaml.safe_load(kube_cluster.kubeconfig_path.read_text())
    config["clusters"][0]["cluster"]["proxy-url"] = proxy.url
    kubeconfig = tmp_path / "proxied.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    async with await connect(kubeconfig) as cluster:
        namespaces = await cluster.list("v1", "Namespace")
    assert any(item["metadata"]["name"] == "default" for item in namespaces.items)
    assert _tunnels(proxy, _server_port(kube_cluster)) >= 1, proxy.log


async def test_https_proxy_is_used_unless_no_proxy_names_the_server(kube_cluster: KubeCluster, proxy: TinyProxy,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port = _server_port(kube_cluster)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with await connect(kube_cluster.kubeconfig_path) as cluster:
        await cluster.get("v1", "Namespace", "default")
    through_proxy = _tunnels(proxy, port)
    assert through_proxy >= 1, proxy.log

    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    async with await connect(kube_cluster.kubeconfig_path) as cluster:
        await cluster.get("v1", "Namespace", "default")
    assert _tunnels(proxy, port) == through_proxy, "NO_PROXY named the server, yet the request went through the proxy"
