"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager on loopback.

`KubeCluster` starts the binaries that `scripts/kube-binaries.sh` builds (`kube_binaries()` runs it) in a
temporary directory, on free 127.0.0.1 ports: a throw-away CA and serving certificate, a service-account
key pair, a static token file whose admin is in `system:masters`, RBAC authorization. kube-controller-manager
plays the parts no API server plays alone: garbage collection of owned objects, namespace deletion, PV
binding, default service accounts and the `kube-root-ca.crt` config map. There is no kubelet or scheduler:
nothing runs pods until a test starts `cdi node` (`tests/support/kubenode.py`). The API server presents a
kubelet client certificate of the cluster CA, so `kubectl logs` reaches the kubelet API `cdi node` serves.

`tests/kube/conftest.py` wires it into pytest (`kube_cluster`, `kube_namespace`). Every process runs in
its own process group and `stop()` ends the groups, so nothing outlives the session.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube-binaries.sh"
BIN_ENV = "PYCDI_KUBE_BIN"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
GO_MISSING_EXIT = 3  # scripts/kube-binaries.sh: Go is not on PATH and nothing is built yet

# Controllers that need neither a cloud nor a kubelet. Deliberately absent: the workload controllers
# (nothing would run their pods) and the node lifecycle ones (there are no nodes).
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
SERVICE_CIDR = "10.96.0.0/16"
_VALIDITY = datetime.timedelta(days=7)


class KubeBinariesUnavailable(Exception):
    """The binaries are not built and cannot be: Go is missing. The fixtures skip with this message."""


def kube_binaries() -> Path:
    """The directory holding the control-plane binaries: $PYCDI_KUBE_BIN, else built (once) by the script."""
    given = os.environ.get(BIN_ENV)
    if given:
        directory = Path(given)
        missing = [name for name in BINARIES if not (directory / name).is_file()]
        if missing:
            raise RuntimeError(f"{BIN_ENV}={given} lacks {', '.join(missing)}; run scripts/kube-binaries.sh")
        return directory
    result = subprocess.run([str(BUILD_SCRIPT)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            check=False)
    if result.returncode == GO_MISSING_EXIT:
        raise KubeBinariesUnavailable("Go is not installed: cannot build kube-apiserver and etcd "
                                      "(scripts/kube-binaries.sh); the Kubernetes suites are skipped")
    if result.returncode != 0:
        raise RuntimeError(f"scripts/kube-binaries.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- a throw-away PKI --------------------------------------------------------------------------------------

def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _Authority:
    """The cluster CA: signs the apiserver's serving certificate and client certificates (CN user, O groups)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pycdi-test-kubernetes-ca")])
        cert = (cls._builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
                 ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALIDITY))

    def issue(self, common_name: str, organizations: Sequence[str] = (), *, server_names: Sequence[str] = ()
              ) -> tuple[bytes, bytes]:
        """A leaf certificate and its key, PEM: a server one when `server_names` is given, else a client one."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
                            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (self._builder(subject, self.cert.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if server_names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                                            critical=False)
        return _pem_cert(builder.sign(self.key, hashes.SHA256())), _pem_key(key)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# --- processes ---------------------------------------------------------------------------------------------

@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers past `timeout`."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while others of its group linger; make sure none does.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class KubeCluster:
    """etcd + kube-apiserver (+ kube-controller-manager) for one test session; see the module docstring."""

    def __init__(self, bin_dir: Path, workdir: Path, *, controllers: Sequence[str] | None = DEFAULT_CONTROLLERS,
                 ready_timeout: float = 120.0, extra_apiserver_args: Sequence[str] = ()) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.controllers = tuple(controllers) if controllers else ()
        self.extra_apiserver_args = tuple(extra_apiserver_args)  # e.g. a front proxy's
        self.ready_timeout = ready_timeout
        self.admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        self.server_url = ""
        self.kubeconfig_path = workdir / "admin.kubeconfig"
        self.ca_path = workdir / "pki" / "ca.crt"
        self._authority: _Authority | None = None
        self._processes: list[_Process] = []

    def __enter__(self) -> KubeCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start etcd, then the API server (waiting for /readyz), then the controller manager."""
        try:
            self._write_pki()
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self.kubeconfig_path.write_text(self._kubeconfig("admin", {"token": self.admin_token}))
            if self.controllers:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process, newest first (controller manager, API server, etcd)."""
        while self._processes:
            self._processes.pop().stop()

    # --- clients -------------------------------------------------------------------------------------------

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups`, by a client certificate signed by the cluster CA.

        The user has no permissions until a test binds some with RBAC (`system:masters` in `groups` is admin).
        """
        assert self._authority is not None, "start() the cluster first"
        cert, key = self._authority.issue(user, groups)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        path = self.workdir / f"{safe}-{os.urandom(3).hex()}.kubeconfig"
        path.write_text(self._kubeconfig(user, {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}))
        path.chmod(0o600)
        return path

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                token: str | None = None, content_type: str = "application/json") -> dict[str, Any]:
        """One REST call as the admin (or `token`), for set-up and clean-up; HTTP errors raise urllib's HTTPError."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server_url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.admin_token}", "Content-Type": content_type,
            "Accept": "application/json"})
        with urllib.request.urlopen(request, context=self._ssl_context(), timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster (as the admin unless `kubeconfig` says otherwise)."""
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig_path),
                               *args], input=input, capture_output=True, text=True, timeout=60, check=check)

    def logs(self) -> str:
        """The last lines of every process's log, for assertion messages."""
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self._processes)

    # --- internals -----------------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        self._authority = authority = _Authority.create()
        self.ca_path.write_bytes(_pem_cert(authority.cert))
        cert, key = authority.issue("kube-apiserver", server_names=(
            "127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", "10.96.0.1"))
        (pki / "apiserver.crt").write_bytes(cert)
        (pki / "apiserver.key").write_bytes(key)
        # What the API server presents to kubelets (`cdi node`'s kubelet API) for `kubectl logs`, as kubeadm
        # issues it: a client certificate of the cluster CA in an admin group.
        cert, key = authority.issue("kube-apiserver-kubelet-client", ("system:masters",))
        (pki / "apiserver-kubelet-client.crt").write_bytes(cert)
        (pki / "apiserver-kubelet-client.key").write_bytes(key)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (pki / "sa.key").write_bytes(_pem_key(sa_key))
        (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (pki / "tokens.csv").write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        for path in pki.iterdir():
            path.chmod(0o600)

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen([str(self.bin_dir / name), *args], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        process = _Process(name, popen, log)
        self._processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        process = self._spawn("etcd", [
            "--name=pycdi", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=pycdi={peer_url}", "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # throw-away data: durability is not worth the disk latency
            "--log-level=warn"])
        self._wait(process, lambda: json.loads(_get(f"{client_url}/health")).get("health") == "true")
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        pki, port = self.workdir / "pki", free_port()
        self.server_url = f"https://127.0.0.1:{port}"
        process = self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            # v1.37 refuses to start when the endpoint reconciler meets a loopback advertise address.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_path}", f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--allow-privileged=true", "--profiling=false", "--v=1", *self.extra_apiserver_args])
        self._wait(process, lambda: _get(f"{self.server_url}/readyz", self._ssl_context(), self.admin_token) == "ok")

    def _start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig_path}", f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={self.ca_path}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--kube-api-qps=100", "--kube-api-burst=200",
            "--v=1"])

    def _wait(self, process: _Process, ready: Any) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{process.tail()}")
            try:
                if ready():
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{process.name} not ready after {self.ready_timeout:.0f} s:\n{process.tail()}")

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def _kubeconfig(self, user: str, credentials: dict[str, str]) -> str:
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "pycdi-test", "cluster": {
                "server": self.server_url, "certificate-authority-data": _b64(self.ca_path.read_bytes())}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": user, "context": {"cluster": "pycdi-test", "user": user}}],
            "current-context": user,
        })


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _get(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context,
                                    timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:  # /readyz answers 500 until every check passes
        error.close()
        return ""
