"""A real nginx on loopback for HTTP data-source tests.

`NginxServer` picks free ports, renders its configuration with `nginx_config.render_config`, runs
nginx in the foreground as a child process whose state (pid file, logs, temp dirs) lives in a
work directory, waits until every listener accepts connections, and stops it on exit. Tests build
URLs with `url(path, tls=..., auth=..., location=...)`. A missing nginx binary is an error, never a
skip: the project's set-up installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.nginx_config import (
    ConfigInputs,
    Credentials,
    Location,
    Ports,
    htpasswd_line,
    render_config,
)
from tests.support.tls import TestPKI

__all__ = ["Credentials", "Location", "NginxError", "NginxServer", "Ports", "find_nginx"]

_FALLBACK_BINARY = Path("/usr/sbin/nginx")
_START_ATTEMPTS = 3  # free ports are picked then released, so another process may grab one


class NginxError(RuntimeError):
    """nginx is missing or did not start or stop as expected."""


def find_nginx(search_path: str | None = None, fallback: Path = _FALLBACK_BINARY) -> Path:
    """The nginx binary on PATH (or `search_path`), else `fallback`; a clear error when neither exists."""
    found = shutil.which("nginx", path=search_path)
    if found:
        return Path(found)
    if fallback.exists():
        return fallback
    raise NginxError(
        "nginx is required by the HTTP tests but was not found on PATH or at /usr/sbin/nginx; "
        "install it (Debian: apt-get install -y nginx)"
    )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class NginxServer:
    """One nginx master with four listeners (plain, basic-auth, TLS, TLS + basic-auth)."""

    def __init__(
        self,
        docroot: Path,
        workdir: Path,
        pki: TestPKI,
        *,
        credentials: Credentials | None = None,
        slow_rate: int = 1 << 20,
        startup_timeout: float = 10.0,
        binary: Path | None = None,
    ) -> None:
        self.docroot = docroot.resolve()
        self.workdir = workdir.resolve()
        self.pki = pki
        self.credentials = credentials or Credentials()
        self.slow_rate = slow_rate
        self.startup_timeout = startup_timeout
        self.binary = binary or find_nginx()
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: Ports | None = None

    @property
    def ports(self) -> Ports:
        if self._ports is None:
            raise NginxError("nginx is not running")
        return self._ports

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "error.log"

    def url(self, path: str = "", *, tls: bool = False, auth: bool = False, location: Location = Location.FILES) -> str:
        """URL of `path` (relative to the document root) under `location` on the chosen listener."""
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{self.ports.select(tls=tls, auth=auth)}{location}{path.lstrip('/')}"

    def access_log_lines(self) -> list[str]:
        """Lines logged so far: `port "request line" status bytes "range header"`."""
        if not self.access_log.exists():
            return []
        return self.access_log.read_text().splitlines()

    def start(self) -> None:
        if self._process is not None:
            raise NginxError("nginx is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(htpasswd_line(self.credentials))
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports = Ports(*_free_ports(4))
            self._launch(ports, htpasswd)
            if self._wait_ready(ports, last_attempt=attempt == _START_ATTEMPTS):
                self._ports = ports
                return

    def _launch(self, ports: Ports, htpasswd: Path) -> None:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / f"tmp-{kind}").mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            render_config(
                ConfigInputs(
                    workdir=self.workdir,
                    docroot=self.docroot,
                    ports=ports,
                    cert=self.pki.server_chain,
                    key=self.pki.server_key,
                    htpasswd=htpasswd,
                    slow_rate=self.slow_rate,
                    run_as_root=os.geteuid() == 0,
                )
            )
        )
        argv = [str(self.binary), "-p", f"{self.workdir}/", "-c", str(conf), "-e", str(self.error_log)]
        with open(self.workdir / "stderr.log", "ab") as stderr:
            # A new session lets stop() take down workers too if the master has to be killed.
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True
            )

    def _wait_ready(self, ports: Ports, *, last_attempt: bool) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        pending = list(ports.all())
        while pending:
            if self._process.poll() is not None:
                log = self._logs()
                self._process = None
                if "Address already in use" in log and not last_attempt:
                    return False
                raise NginxError(f"nginx exited during start-up:\n{log}")
            if time.monotonic() > deadline:
                self.stop()
                raise NginxError(f"nginx did not listen on {ports} within {self.startup_timeout}s")
            pending = [port for port in pending if not _accepts(port)]
            if pending:
                time.sleep(0.02)
        return True

    def _logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.workdir / "stderr.log", self.error_log) if p.exists()]
        return "\n".join(parts)

    def stop(self, timeout: float = 5.0) -> None:
        """Fast shutdown (SIGTERM) so slow downloads do not hold us up; SIGKILL the group if stuck."""
        process, self._process, self._ports = self._process, None, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
