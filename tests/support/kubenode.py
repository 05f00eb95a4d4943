"""`cdi controller` and `cdi node` against a real API server, as processes, for end-to-end tests.

`KubeDeployment` starts both on a kubeconfig (the node agent keeps its pods and volumes under its own
home), and stops them and releases every mount and loop device they left, however the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support.controlplane import release_storage


def _cdi() -> str:
    return str(Path(sys.executable).with_name("cdi"))


@dataclass
class KubeDeployment:
    kubeconfig: Path
    home: Path
    namespace: str = "default"  # where the controller's leader Lease lives
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> KubeDeployment:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CDI_HOME": str(self.home)}
        for name, args in (("controller", ["controller", "--kubeconfig", str(self.kubeconfig), "--namespace",
                                           self.namespace, "--health-port", "0"]),
                           ("node", ["node", "--kubeconfig", str(self.kubeconfig), "--pod-backoff", "0.5"])):
            with (self.home / f"{name}.log").open("ab") as out:
                self.processes.append(subprocess.Popen([_cdi(), *args], env=env, stdout=out,
                                                       stderr=subprocess.STDOUT))
        return self

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

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n" + (self.home / f"{name}.log").read_text(errors="replace")[-4000:]
                         for name in ("controller", "node") if (self.home / f"{name}.log").exists())
