"""Runs a real `cdi serve` for end-to-end tests and drives it through the real `cdi` CLI, as a user
would; cleans up every mount and loop device the embedded volumes left under its home, even when a
test fails or the server was killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdi.embedded.pods import orphans
from cdi.embedded.pods.containerrun import LABEL_STATE_DIR
from cdi.embedded.pods.containers import PodmanSettings
from cdi.embedded.pods.node import MARKER_STATE_DIR
from cdi.embedded.pods.volumes import pv_path


def _cdi_binary() -> str:
    return str(Path(sys.executable).with_name("cdi"))


@dataclass
class ControlPlane:
    home: Path
    pod_backoff: float = 0.5
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    uploadproxy_port: int = 0  # 0: a free one (a restart then gets another)
    serve_env: dict[str, str] = field(default_factory=dict)  # extra variables for `cdi serve` only
    serve_command: list[str] = field(default_factory=lambda: [_cdi_binary()])  # what runs `cdi`, for `serve`

    def __post_init__(self) -> None:
        self.log = self.home / "serve.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CDI_HOME": str(self.home)}

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        before = self.log.stat().st_size if self.log.exists() else 0  # a restart: only this run's lines count
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([*self.serve_command, "serve", "--pod-runtime", "process",
                                             "--pod-backoff", str(self.pod_backoff),
                                             "--uploadproxy-port", str(self.uploadproxy_port)],
                                            env=self.env | self.serve_env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if self.cdi("get", "cdiconfig", "config", "-o", "json", check=False).returncode == 0 and \
                    b"started" in self.log.read_bytes()[before:]:
                return
            time.sleep(0.2)
        raise AssertionError(f"cdi serve did not become ready:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cdi(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([_cdi_binary(), *args], env=self.env, capture_output=True, text=True, input=input,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"cdi {' '.join(args)} failed ({result.returncode}): {result.stderr}\n"
                                 f"--- serve log tail ---\n{self.log_tail()}")
        return result

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.cdi("apply", "-f", "-", input=text)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        result = self.cdi("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def wait_for(self, predicate: Any, what: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}\n--- serve log tail ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def volume_path(self, claim: str, namespace: str = "default") -> Path:
        pvc = self.get("pvc", claim, namespace)
        assert pvc is not None, f"no PVC {claim}"
        pv = self.get("pv", pvc["spec"]["volumeName"])
        assert pv is not None
        return Path(pv_path(pv) or "")


def stop_workers(home: Path) -> None:
    """Kill the worker pods that a `cdi serve`/`cdi node` with its state under `home` left running (they
    outlive it on purpose), found by the marker variables in their environment, and remove their podman
    containers."""
    prefix = str(home.absolute())
    marked = {}
    for entry in Path("/proc").iterdir():
        try:
            environ = orphans.parse_environ((entry / "environ").read_bytes()) if entry.name.isdigit() else {}
        except OSError:
            continue
        state = environ.get(MARKER_STATE_DIR, "")
        if state == prefix or state.startswith(prefix + "/"):
            marked[int(entry.name)] = state
    orphans.kill_all(marked)
    settings = PodmanSettings.from_environment(os.environ)
    if shutil.which(settings.podman) is None or not settings.containers_conf.is_file():
        return
    listed = subprocess.run([settings.podman, "ps", "--all", "--format", "{{.Names}} {{.Labels}}"],
                            env=settings.environ(os.environ), capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in listed.stdout.splitlines()
             if f"{LABEL_STATE_DIR}:{prefix}" in line]
    for name in names:
        subprocess.run([settings.podman, "rm", "--force", "--ignore", name], env=settings.environ(os.environ),
                       capture_output=True, check=False)


def release_storage(root: Path) -> None:
    """Stop the workers left running (`stop_workers`), then unmount every filesystem and detach every loop
    device backed by files under `root`. The devices are listed first: once the pool's reflink filesystem
    (which holds the volume images) is unmounted, lazily as its images are still attached, the kernel
    names their backing files relative to it."""
    if not root.exists():
        return
    stop_workers(root)
    real = str(root.resolve())
    listing = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=False).stdout
    devices = [parts[0] for parts in (line.split(None, 1) for line in listing.splitlines())
               if len(parts) == 2 and parts[1].strip().startswith(real)]
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(real)), key=lambda m: m.count("/"), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    for device in devices:
        subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
