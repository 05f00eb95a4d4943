"""A real forward proxy (Debian's tinyproxy) on loopback, for the HTTP source's proxy support: plain
requests in absolute form, CONNECT tunnels for https, and proxy credentials. Runs in the foreground
as a child process and is stopped on exit; its log tells which requests and tunnels it carried. A
missing binary is an error, never a skip: the project's set-up installs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.processes import stop_child

USER, PASSWORD = "proxy-user", "proxy-secret"


class TinyProxy:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not Path(binary).exists():
            raise RuntimeError("tinyproxy is required by the proxy tests; install it (apt-get install -y tinyproxy)")
        self._binary = binary
        self._dir = workdir
        self._dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return (self._dir / "tinyproxy.log").read_text(errors="replace")

    def __enter__(self) -> TinyProxy:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        conf = self._dir / "tinyproxy.conf"
        conf.write_text(f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\n"
                        f"LogLevel Info\nBasicAuth {USER} {PASSWORD}\n")
        with (self._dir / "tinyproxy.log").open("wb") as log:
            self._process = subprocess.Popen([self._binary, "-d", "-c", str(conf)], stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"tinyproxy did not start:\n{self.log}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._process is not None:
            stop_child(self._process)
