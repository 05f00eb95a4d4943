"""`cdi controller` and `cdi node` against a real API server, as processes, for end-to-end tests.

`KubeDeployment` starts both from the cluster admin's kubeconfig (the node agent keeps its pods and
volumes under its own home), and stops them and releases every mount and loop device they left, however
the test ends.

The controller runs as an install's would: as the service account `cdi-sa` of CDI namespace
`namespace`, with only the rights `cdi manifests` renders for it. On entering, the install's Namespace
and RBAC documents (`cdi.install.namespace_object` and `cdi.install.rbac.rbac`: service accounts,
ClusterRoles, Roles and their bindings; no CRDs, webhooks or workloads) are applied server-side, and a
TokenRequest for `cdi-sa` — what a pod's projected token is — goes into the controller's kubeconfig. So
a rule missing from `cdi.install.rbac` shows up here as a 403 in the controller's log and a test that
never finishes. The documents are applied on every entry, not once per cluster: applying them again
writes nothing, and `tests/kube/test_manifests.py` removes an install's cluster-wide roles when it is
done, so a record of "already applied" could lie. The node agent is no CDI component of a real install
(kubelet and CSI drivers play it): it keeps the admin kubeconfig. The leader Lease and CDI's own Secrets
(upload CA, token keys, clone-token signing key) live in `namespace`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes_asyncio.client import AuthenticationV1TokenRequest, CoreV1Api, V1TokenRequestSpec
from kubernetes_asyncio.config import new_client_from_config

from cdi.contracts import deployment as dep
from cdi.install import namespace_object
from cdi.install.objects import install_kinds
from cdi.install.rbac import rbac
from cdi.install.serverside import apply_documents
from cdi.kube import connect
from tests.support.controlplane import release_storage

TOKEN_SECONDS = 4 * 3600  # longer than any test keeps a deployment
_REFUSAL = re.compile(r'cannot \S+ resource "[^"]+" in API group "[^"]*"( in the namespace "[^"]*")?')


def _cdi() -> str:
    return str(Path(sys.executable).with_name("cdi"))


async def _install_rbac(admin: Path, namespace: str) -> None:
    async with await connect(admin, kinds=install_kinds()) as cluster:
        await apply_documents(cluster, [namespace_object(namespace), *rbac(namespace)])


async def _token(admin: Path, namespace: str, account: str) -> str:
    """A bound token for the service account, as the kubelet requests one for a pod."""
    api = await new_client_from_config(config_file=str(admin), persist_config=False)
    async with api:
        request = AuthenticationV1TokenRequest(spec=V1TokenRequestSpec(audiences=[],
                                                                      expiration_seconds=TOKEN_SECONDS))
        answer = await CoreV1Api(api).create_namespaced_service_account_token(account, namespace, request)
        return str(answer.status.token)


def service_account_kubeconfig(admin: Path, namespace: str, account: str, path: Path) -> Path:
    """Apply the install's RBAC for `namespace` and write a kubeconfig for its service account `account`
    (same server and CA as `admin`). Synchronous: the tests call it from inside their event loop, so the
    API calls run on a loop of their own in a helper thread."""
    failure: list[BaseException] = []
    token: list[str] = []

    async def work() -> None:
        await _install_rbac(admin, namespace)
        token.append(await _token(admin, namespace, account))

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="kubenode-rbac")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    config: dict[str, Any] = yaml.safe_load(admin.read_text())
    user = f"system:serviceaccount:{namespace}:{account}"
    context = {**config["contexts"][0]["context"], "user": user}
    config["users"] = [{"name": user, "user": {"token": token[0]}}]
    config["contexts"] = [{"name": user, "context": context}]
    config["current-context"] = user
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class KubeDeployment:
    kubeconfig: Path  # the cluster admin's: the node agent runs with it, and it installs the controller's RBAC
    home: Path
    namespace: str = dep.NAMESPACE  # the CDI namespace: the controller's account, leader Lease and Secrets
    pod_runtime: str = "process"  # `cdi node --pod-runtime`: the existing tests run worker pods as processes
    pod_image: str | None = None  # `cdi node --pod-image` (None: the node's default)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)  # by name: controller, node

    def __enter__(self) -> KubeDeployment:
        self.home.mkdir(parents=True, exist_ok=True)
        controller = service_account_kubeconfig(self.kubeconfig, self.namespace, dep.CONTROLLER_SA,
                                                self.home / "controller.kubeconfig")
        self.commands = {"controller": ["controller", "--kubeconfig", str(controller), "--namespace", self.namespace,
                                        "--health-port", "0"],
                         "node": ["node", "--kubeconfig", str(self.kubeconfig), "--pod-backoff", "0.5",
                                  "--pod-runtime", self.pod_runtime, "--kubelet-port", "0",
                                  *(["--pod-image", self.pod_image] if self.pod_image else [])]}
        for name in self.commands:
            self.processes.append(self._start(name))
        return self

    def _start(self, name: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("ab") as out:
            return subprocess.Popen([_cdi(), *self.commands[name]], env={**os.environ, "CDI_HOME": str(self.home)},
                                    stdout=out, stderr=subprocess.STDOUT)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop `cdi controller` or `cdi node` (SIGTERM, or `sig`) and start it again, as a rollout would."""
        index = list(self.commands).index(name)
        process = self.processes[index]
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.processes[index] = self._start(name)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        release_storage(self.home)

    def forbidden(self) -> list[str]:
        """The controller's log lines that report a refusal by RBAC (403 Forbidden)."""
        log = self.home / "controller.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if "is forbidden" in line]

    def logs(self) -> str:
        """The tails of both logs, after every distinct refusal the controller met (they may be long gone
        from the tail)."""
        refused = list(dict.fromkeys(m.group(0) for line in self.forbidden() if (m := _REFUSAL.search(line))))
        head = ["--- controller refused by RBAC ---", *refused] if refused else []
        return "\n".join([*head, *(f"--- {name} ---\n" + (self.home / f"{name}.log").read_text(errors="replace")[-4000:]
                                    for name in ("controller", "node") if (self.home / f"{name}.log").exists())])
