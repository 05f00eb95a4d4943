"""Real Debian `docker-registry` (distribution v2) processes on loopback, and a tiny token server.

`RegistryServer` writes its own config (never the package's default, which listens on all interfaces
with htpasswd on), serves a filesystem storage directory on a free 127.0.0.1 port, and stops with
the test. Several servers may share one storage directory: the tests push once through a plain one
and read through variants with TLS (the `pki` fixture's server certificate), htpasswd basic auth
(bcrypt lines from `htpasswd -Bbn`) or bearer tokens. The registry has no token server of its own, so
`TokenServer` is one: an aiohttp app on its own thread that checks basic credentials and signs ES256
JWTs with the test PKI's server key, the certificate in the `x5c` header, which the registry verifies
against the CA (`rootcertbundle`). A missing binary is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.tls import TestPKI

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
_START_ATTEMPTS = 3


class RegistryError(RuntimeError):
    """docker-registry or htpasswd is missing, or the registry did not start."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd entry (the only scheme the registry accepts)."""
    binary = shutil.which("htpasswd")
    if binary is None:
        raise RegistryError("htpasswd is required (Debian: apt-get install -y apache2-utils)")
    out = subprocess.run([binary, "-Bbn", username, password], capture_output=True, text=True, check=True)
    return out.stdout.strip() + "\n"


@dataclass(frozen=True)
class TokenAuth:
    realm: str
    service: str
    issuer: str
    root_bundle: Path


@dataclass
class RegistryServer:
    storage: Path
    workdir: Path
    tls: TestPKI | None = None
    htpasswd: Path | None = None
    token: TokenAuth | None = None
    binary: Path = REGISTRY_BINARY
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def reference(self, repository: str, tag: str = "latest") -> str:
        separator = "@" if tag.startswith("sha256:") else ":"
        return f"docker://{self.host}/{repository}{separator}{tag}"

    def _config(self) -> str:
        http: dict[str, object] = {"addr": self.host, "secret": "test-only-secret"}
        if self.tls:
            http["tls"] = {"certificate": str(self.tls.server_chain), "key": str(self.tls.server_key)}
        config: dict[str, object] = {
            "version": "0.1", "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http,
        }
        if self.htpasswd:
            config["auth"] = {"htpasswd": {"realm": "cdi-test", "path": str(self.htpasswd)}}
        elif self.token:
            config["auth"] = {"token": {"realm": self.token.realm, "service": self.token.service,
                                        "issuer": self.token.issuer, "rootcertbundle": str(self.token.root_bundle)}}
        return json.dumps(config)  # JSON is YAML

    def start(self, timeout: float = 10.0) -> None:
        if not self.binary.exists():
            raise RegistryError(f"{self.binary} is required (Debian: apt-get install -y docker-registry)")
        self.storage.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            self.port = _free_port()
            (self.workdir / "config.yml").write_text(self._config())
            with (self.workdir / "registry.log").open("ab") as log:
                self._process = subprocess.Popen([str(self.binary), "serve", str(self.workdir / "config.yml")],
                                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._wait(timeout):
                return
            if attempt == _START_ATTEMPTS - 1:
                raise RegistryError(f"docker-registry did not start:\n{self.log()}")

    def _wait(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def log(self) -> str:
        path = self.workdir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ThreadedApp(ABC):
    """An aiohttp application served from its own thread and event loop (the tests are synchronous)."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the app's routes."""

    def start(self) -> None:
        async def serve() -> None:
            app = web.Application()
            self.routes(app)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None


class TokenServer(ThreadedApp):
    """`GET /token?service=&scope=`: checks basic credentials, grants what the scope asks for."""

    def __init__(self, pki: TestPKI, username: str, password: str, *, service: str = "cdi-test-registry",
                 issuer: str = "cdi-test-token-server") -> None:
        super().__init__()
        self.service = service
        self.issuer = issuer
        self._credentials = (username, password)
        self._key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._root_bundle = pki.ca_cert
        self.requests: list[dict[str, str]] = []

    @property
    def auth(self) -> TokenAuth:
        return TokenAuth(f"http://127.0.0.1:{self.port}/token", self.service, self.issuer, self._root_bundle)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/token", self._token)

    async def _token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != self._credentials:
                return web.json_response({"details": "wrong credentials"}, status=401)
        scope = request.query.get("scope", "")
        self.requests.append({"user": user, "scope": scope, "service": request.query.get("service", "")})
        access = []
        if scope.count(":") >= 2 and user:
            kind, rest = scope.split(":", 1)
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})  # type: ignore[arg-type]
        return web.json_response({"token": token, "expires_in": 300})


class StubRegistry(ThreadedApp):
    """Answers `/v2/` and serves fixed manifest bytes for every manifest request: for documents a real
    registry refuses to store (it validates manifests on push), such as malformed JSON."""

    def __init__(self, manifest: bytes, content_type: str) -> None:
        super().__init__()
        self._manifest_bytes = manifest
        self._content_type = content_type

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/", self._ping)
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", self._manifest)

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.json_response({})

    async def _manifest(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._manifest_bytes, headers={"Content-Type": self._content_type})
