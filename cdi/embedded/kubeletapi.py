"""The node agent's kubelet API: container logs, so `kubectl logs` works for pods `cdi node` runs.

A real API server answers `GET pods/NAME/log` by calling the kubelet of the pod's node at
`https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/NS/POD/CONTAINER`
with its kubelet client certificate (`--kubelet-client-certificate`). `cdi node` has no kubelet, so it
serves that one path itself, reading the log files its pod runner writes (`cdi.embedded.pods.paths`).
The embedded mode needs none of this: there `Cluster.pod_logs` reads the files directly.

Security follows kubelet's defaults with anonymous access off: a client certificate is required and must
chain to the cluster's client CA (401 otherwise); the user it names (CN, groups from O) is authorized
with a SubjectAccessReview for `get` on `nodes/proxy` of this node, as kubelet's webhook authorizer does
for every path it does not map to a narrower subresource (403 otherwise). The serving certificate is
self-signed and made at start: the API server does not verify kubelet serving certificates unless it is
given `--kubelet-certificate-authority`.

What kubelet can do and this cannot: timestamps and `sinceSeconds`/`sinceTime` need a time per line,
which our log files do not record, so such requests are refused with a 400 that says so. `follow`
streams the log as it grows until the container stops running (its pod status says so) or the client
goes away.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from cdi import pki
from cdi.cluster.errors import ApiError, NotFound
from cdi.cluster.protocol import Cluster, Object
from cdi.embedded.pods.paths import log_path, pod_dir

log = logging.getLogger("cdi.node.kubelet")
FOLLOW_POLL_SECONDS = 0.25
STATUS_POLL_SECONDS = 1.0
READ_BLOCK = 64 * 1024


class LogRequestError(Exception):
    """A request this server refuses, with the HTTP status kubelet would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogOptions:
    previous: bool = False
    follow: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _count(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LogRequestError(400, f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise LogRequestError(400, f"{name} must not be negative, got {value}")
    return value


def log_options(query: dict[str, str]) -> LogOptions:
    """The request's options as kubelet reads them; refuses the ones our logs cannot answer."""
    for name in ("sinceSeconds", "sinceTime"):
        if query.get(name):
            raise LogRequestError(400, f"{name} is not supported by the pycdi node agent: its container logs "
                                       "record no time per line")
    if _flag(query.get("timestamps")):
        raise LogRequestError(400, "timestamps are not supported by the pycdi node agent: its container logs "
                                   "record no time per line")
    return LogOptions(previous=_flag(query.get("previous")), follow=_flag(query.get("follow")),
                      tail_lines=_count(query, "tailLines"), limit_bytes=_count(query, "limitBytes"))


def tail(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of `data` (all of it when None); a last line without newline counts."""
    if lines is None:
        return data
    if lines == 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def read_log(path: Path, options: LogOptions) -> bytes:
    """The part of the log file `options` asks for (before `limitBytes`, applied by the caller)."""
    with open(path, "rb") as file:
        if options.tail_lines is None:
            return file.read()
        return tail(_read_tail_blocks(file, options.tail_lines), options.tail_lines)


def _read_tail_blocks(file: BinaryIO, lines: int) -> bytes:
    """At least `lines` complete lines from the end of `file` (or all of it), read backwards by blocks."""
    end = file.seek(0, 2)
    start, data = end, b""
    while start > 0 and data.count(b"\n") <= lines:
        start = max(0, start - READ_BLOCK)
        file.seek(start)
        data = file.read(end - start)
    return data


def user_of(der: bytes | None, client_ca: x509.Certificate) -> User:
    """The user a client certificate names, once it is known to chain to the client CA (else 401)."""
    if der is None:
        raise LogRequestError(401, "Unauthorized: a client certificate signed by the cluster's client CA is required")
    cert = x509.load_der_x509_certificate(der)
    try:
        cert.verify_directly_issued_by(client_ca)
    except Exception:  # the TLS layer verified the chain already; this pins it to the one CA
        raise LogRequestError(401, "Unauthorized: the client certificate is not signed by the client CA") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise LogRequestError(401, "Unauthorized: the client certificate names no user (no CN)")
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return User(str(names[0].value), groups)


def access_review(user: User, node: str) -> Object:
    """May `user` get nodes/proxy of `node`? (kubelet's authorizer attributes for /containerLogs)."""
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user.name, "groups": list(user.groups),
                     "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy",
                                            "name": node}}}


def forbidden_message(user: User) -> str:
    return f"Forbidden (user={user.name}, verb=get, resource=nodes, subresource=proxy)"


def container_running(pod: Object, container: str) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return "running" in (status.get("state") or {})
    return False


class KubeletApi:
    """The HTTPS server; `start` binds it, `close` stops it."""

    def __init__(self, cluster: Cluster, state_dir: Path, node: str, client_ca_pem: bytes) -> None:
        self._cluster = cluster
        self._state_dir = state_dir
        self._node = node
        self._client_ca_pem = client_ca_pem
        self._client_ca = x509.load_pem_x509_certificate(client_ca_pem)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", _ok)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._guarded(self._logs))
        return app

    async def start(self, host: str, port: int, cert_dir: Path) -> int:
        """Serve on `host:port` (0 picks a free port) with a fresh self-signed certificate; returns the port."""
        context = self._tls_context(cert_dir, host)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=context).start()
        bound = self._runner.addresses[0][1] if self._runner.addresses else port
        return int(bound)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _tls_context(self, cert_dir: Path, host: str) -> ssl.SSLContext:
        now = datetime.datetime.now(datetime.UTC)
        ca = pki.new_ca(f"{self._node}-kubelet-ca", now, days=365)
        serving = pki.issue(ca, self._node, now, names=(host, self._node), days=365)
        cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_file, key_file = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
        key_file.touch(mode=0o600)
        key_file.write_bytes(serving.key_pem)
        cert_file.write_bytes(serving.cert_pem + ca.cert_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        context.load_verify_locations(cadata=self._client_ca_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                await self._authorize(request)
                return await handler(request)
            except LogRequestError as e:
                return web.Response(status=e.status, text=str(e))
        return guarded

    async def _authorize(self, request: web.Request) -> None:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        user = user_of(der, self._client_ca)
        try:
            answer = await self._cluster.create(access_review(user, self._node))
        except ApiError as e:
            log.warning("could not authorize %s: the SubjectAccessReview failed: %s", user.name, e)
            raise LogRequestError(500, f"could not authorize the request: {e}") from e
        status = answer.get("status") or {}
        if status.get("allowed") is not True or status.get("denied"):
            raise LogRequestError(403, forbidden_message(user))

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        options = log_options(dict(request.query))
        if not pod_dir(self._state_dir, namespace, pod).is_dir():
            raise LogRequestError(404, f'pod "{pod}" in namespace "{namespace}" is not running on this node')
        path = log_path(self._state_dir, namespace, pod, container, options.previous)
        if not path.is_file():
            if options.previous:
                raise LogRequestError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            raise LogRequestError(400, f'container "{container}" in pod "{pod}" has no log on this node '
                                       "(it has not started)")
        data = read_log(path, options)
        if options.limit_bytes is not None:
            data = data[:options.limit_bytes]
        if not options.follow or options.previous:
            return web.Response(body=data, content_type="text/plain")
        return await self._follow(request, path, data, namespace, pod, container, options.limit_bytes)

    async def _follow(self, request: web.Request, path: Path, data: bytes, namespace: str, pod: str,
                      container: str, limit: int | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        sent, position = len(data), path.stat().st_size
        loop = asyncio.get_running_loop()
        next_status = loop.time()
        while limit is None or sent < limit:
            chunk = _read_from(path, position)
            if chunk:
                position += len(chunk)
                chunk = chunk if limit is None else chunk[:limit - sent]
                sent += len(chunk)
                await response.write(chunk)
                continue
            if loop.time() >= next_status:
                next_status = loop.time() + STATUS_POLL_SECONDS
                if not await self._still_running(namespace, pod, container):
                    if not _read_from(path, position):
                        break
                    continue
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response

    async def _still_running(self, namespace: str, pod: str, container: str) -> bool:
        try:
            return container_running(await self._cluster.get("v1", "Pod", pod, namespace), container)
        except NotFound:
            return False


def _read_from(path: Path, position: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(position)
            return file.read(READ_BLOCK)
    except OSError:
        return b""


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")
