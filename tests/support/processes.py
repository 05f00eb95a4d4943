"""Stopping the real servers the tests start as child processes (moto, tinyproxy): SIGTERM, then
SIGKILL if it has not exited within `timeout` seconds."""

from __future__ import annotations

import subprocess


def stop_child(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
