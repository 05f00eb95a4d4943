"""Runs a real `cdi serve` for end-to-end tests and drives it through the real `cdi` CLI, as a user
would; cleans up every mount and loop device the embedded volumes left under its home, even when a
test fails or the server was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdi.embedded.pods.volumes import pv_path


def _cdi_binary() -> str:
    return str(Path(sys.executable).with_name("cdi"))


@dataclass
class ControlPlane:
    home: Path
    pod_backoff: float = 0.5
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / "serve.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CDI_HOME": str(self.home)}

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([_cdi_binary(), "serve", "--pod-runtime", "process", "--pod-backoff", str(self.pod_backoff),
                                             "--uploadproxy-port", "0"],
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if self.cdi("get", "cdiconfig", "config", "-o", "json", check=False).returncode == 0 and \
                    "started" in self.log.read_text():
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


def release_storage(root: Path) -> None:
    """Unmount every filesystem and detach every loop device backed by files under `root`. The devices
    are listed first: once the pool's reflink filesystem (which holds the volume images) is unmounted,
    lazily as its images are still attached, the kernel names their backing files relative to it."""
    if not root.exists():
        return
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
