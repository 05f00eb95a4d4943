"""`cdi-importer` (and the upload server) as a container's PID 1 (a kubelet without an init) stop on SIGTERM: a PID 1
gets only the signals it handles, so without a handler the pod would sit out its grace period until
SIGKILL. Here the importer runs as PID 1 of a new pid namespace (`unshare --pid --fork`), fetching a
64 MiB image at 1 MiB/s, and exits with 143 (128 + SIGTERM) within seconds of the signal."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.nginx import Location, NginxServer


def child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_the_importer_as_pid_1_stops_on_sigterm(tmp_path: Path, nginx: NginxServer) -> None:
    data = tmp_path / "data"
    data.mkdir()
    environ = {"PATH": os.environ["PATH"], "CDI_DATA_PATH": str(data), "CDI_TERMINATION_LOG": str(tmp_path / "log"),
               "CDI_METRICS_ADDR": "127.0.0.1:0", "IMPORTER_SOURCE": "http", "IMPORTER_IMAGE_SIZE": "128Mi",
               "IMPORTER_ENDPOINT": nginx.url("disk.raw", location=Location.SLOW), "FILESYSTEM_OVERHEAD": "0",
               "CDI_EXTRA_HEADERS_DIR": str(tmp_path / "none"), "IMPORTER_PROXY_CERT_DIR": str(tmp_path / "none")}
    log = (tmp_path / "importer.log").open("wb")
    wrapper = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-m", "importer"], env=environ,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while (pid_1 := child_of(wrapper.pid)) is None or not (data / ".disk.img.partial").exists():
            assert time.monotonic() < deadline and wrapper.poll() is None, (tmp_path / "importer.log").read_text()
            time.sleep(0.1)
        nspid = next(line for line in Path(f"/proc/{pid_1}/status").read_text().splitlines()
                     if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1", nspid  # PID 1 in its own namespace
        os.kill(pid_1, signal.SIGTERM)
        assert wrapper.wait(10) == 128 + signal.SIGTERM, (tmp_path / "importer.log").read_text()
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        log.close()
    assert "SIGTERM received: stopping" in (tmp_path / "importer.log").read_text()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_the_upload_server_as_pid_1_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    environ = {"PATH": os.environ["PATH"], "CDI_UPLOAD_INSECURE": "true", "LISTEN_ADDRESS": "127.0.0.1",
               "LISTEN_PORT": "0", "CDI_DATA_PATH": str(data), "UPLOAD_IMAGE_SIZE": "64Mi", "FILESYSTEM_OVERHEAD": "0",
               "CDI_TERMINATION_LOG": str(tmp_path / "log")}
    log = (tmp_path / "server.log").open("wb")
    wrapper = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c",
                                "from importer.uploadserver.main import main; main()"], env=environ, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while (pid_1 := child_of(wrapper.pid)) is None or "listening" not in (tmp_path / "server.log").read_text():
            assert time.monotonic() < deadline and wrapper.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        os.kill(pid_1, signal.SIGTERM)
        assert wrapper.wait(10) == 128 + signal.SIGTERM, (tmp_path / "server.log").read_text()
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        log.close()
