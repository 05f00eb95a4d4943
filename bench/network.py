"""The benchmark's network: two namespaces joined by a veth pair, nothing else touched.

`cdibench-srv` runs nginx serving the image cache; `cdibench-cli` is the cluster side: every
importing client (curl, our importer, nbdkit, qemu-img, `cdi serve` with its upload proxy) and the
delay relays. Both veth ends carry a `tc tbf` qdisc at 1 Gbit, and each relay adds 10 ms each way
(`tc netem` is not available here), so every connection that crosses the link sees 1 Gbit with a
20 ms round trip. Uploads go the other way, as a user's do: the uploading client runs in
`cdibench-srv` (`in_server`) and reaches, across the link, either the upload proxy of `cdi serve`
or, for the single-hop baseline, an nginx that takes a plain HTTP PUT onto disk. Addresses come from
a private /30 that exists only between the two namespaces. `Network` is a context manager:
namespaces, nginx and the relays go away on exit, including Ctrl-C. Used by `bench.__main__`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

CLIENT_NS = "cdibench-cli"
SERVER_NS = "cdibench-srv"
CLIENT_IP = "10.231.77.1"
SERVER_IP = "10.231.77.2"
RELAY_PORT = 8080
NGINX_PORT = 80
RATE = "1gbit"
ONE_WAY_DELAY = 0.010

NGINX_CONF = """
user root;
worker_processes 2;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen {ip}:{port};
        root {root};
    }}
}}
"""
# The single-hop upload baseline: a plain HTTP PUT onto disk on the cluster side, reached across the
# link through its own relay, like the upload proxy that `cdi serve` runs there.
SINK_CONF = """
user root;
worker_processes 1;
daemon off;
pid {run}/sink.pid;
error_log {run}/sink-error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/sink-body;
    server {{
        listen 127.0.0.1:{port};
        root {run}/sink;
        client_max_body_size 0;
        client_body_buffer_size 1m;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
    }}
}}
"""
SINK_PORT = 8081
UPLOAD_PROXY_PORT = 31443  # `cdi serve`'s default, on the client namespace's loopback
SINK_RELAY_PORT = 8082
PROXY_RELAY_PORT = 8443


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def in_client(argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", CLIENT_NS, *argv]


def in_server(argv: list[str]) -> list[str]:
    """Where an uploading user sits: the far side of the shaped link."""
    return ["ip", "netns", "exec", SERVER_NS, *argv]


class Network:
    def __init__(self, root: Path, run_dir: Path) -> None:
        self.root = root
        self.run_dir = run_dir
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{RELAY_PORT}"

    @property
    def direct_url(self) -> str:
        return f"http://{SERVER_IP}:{NGINX_PORT}"

    @property
    def upload_sink_url(self) -> str:
        """The single-hop upload target, as seen from the server namespace (across the link)."""
        return f"http://{CLIENT_IP}:{SINK_RELAY_PORT}"

    @property
    def upload_proxy_url(self) -> str:
        """`cdi serve`'s upload proxy, as seen from the server namespace (across the link)."""
        return f"https://{CLIENT_IP}:{PROXY_RELAY_PORT}"

    def __enter__(self) -> Network:
        self.teardown()
        try:
            self._namespaces()
            self._start_nginx()
            self._start_relay()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.teardown()

    def _namespaces(self) -> None:
        sh("ip", "netns", "add", CLIENT_NS)
        sh("ip", "netns", "add", SERVER_NS)
        sh("ip", "-n", CLIENT_NS, "link", "add", "cdib0", "type", "veth", "peer", "name", "cdib1", "netns", SERVER_NS)
        for ns, dev, ip in ((CLIENT_NS, "cdib0", CLIENT_IP), (SERVER_NS, "cdib1", SERVER_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE,
               "burst", "1mb", "latency", "50ms")

    def _start_nginx(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "sink").mkdir(exist_ok=True)
        for name, text, ns in (("nginx", NGINX_CONF, SERVER_NS), ("sink", SINK_CONF, CLIENT_NS)):
            conf = self.run_dir / f"{name}.conf"
            conf.write_text(text.format(run=self.run_dir, ip=SERVER_IP, port=NGINX_PORT if name == "nginx" else
                                        SINK_PORT, root=self.root))
            with (self.run_dir / f"{name}.out").open("wb") as log:
                self._processes.append(subprocess.Popen(["ip", "netns", "exec", ns, "nginx", "-c", str(conf)],
                                                        stdout=log, stderr=subprocess.STDOUT))
        self._wait_for(self.direct_url + "/", "nginx")
        self._wait_for(f"http://127.0.0.1:{SINK_PORT}/", "the upload sink")

    def _start_relay(self) -> None:
        for listen, target in ((f"127.0.0.1:{RELAY_PORT}", f"{SERVER_IP}:{NGINX_PORT}"),
                               (f"{CLIENT_IP}:{SINK_RELAY_PORT}", f"127.0.0.1:{SINK_PORT}"),
                               (f"{CLIENT_IP}:{PROXY_RELAY_PORT}", f"127.0.0.1:{UPLOAD_PROXY_PORT}")):
            argv = in_client([sys.executable, "-m", "bench.relay", listen, target, str(ONE_WAY_DELAY)])
            self._processes.append(subprocess.Popen(argv))
        self._wait_for(self.base_url + "/", "relay")
        self._wait_for(self.upload_sink_url + "/", "the upload sink's relay", in_server)

    def _wait_for(self, url: str, what: str, where: Callable[[list[str]], list[str]] = in_client) -> None:
        """Until something answers HTTP at `url` (any status)."""
        for _ in range(100):
            if sh(*where(["curl", "-s", "-o", "/dev/null", "-m", "2", url]), check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not come up at {url}")

    def teardown(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()
        for ns in (CLIENT_NS, SERVER_NS):
            with contextlib.suppress(subprocess.CalledProcessError):
                sh("ip", "netns", "del", ns)
