"""An upload server killed mid-upload, end to end through `cdi serve`: `cdi image-upload` sends a raw image
through a relay to the upload proxy; once part of it went through, the relay holds the connection, the
test SIGKILLs the upload server pod's process, waits for the restarted pod, and lets the relay go on.
The client rides through the proxy's errors, resumes at the offset the new server reports, and the
disk is byte-identical; the bytes the client sent in all stay within the image plus one chunk (and the
TLS and HTTP framing); the claim's events say the upload was resumed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.e2e.test_upload import disk_sha256, image_upload
from tests.support.controlplane import ControlPlane
from tests.support.relay import LoopbackRelay, stop_pumps

pytestmark = pytest.mark.slow
MiB = 1 << 20
CHUNK = 4 * MiB
POD = "cdi-upload-survivor"


class HoldingRelay(LoopbackRelay):
    """Forwards both ways and counts the client's bytes; after `hold_after` of them it stops reading from
    the client (`held` is set) until `release` is called."""

    def __init__(self, upstream_host: str, upstream_port: int, hold_after: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.hold_after = hold_after
        self.sent = 0
        self.held = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, context: Any) -> None:
        pumps = [asyncio.create_task(self._upward(reader, up_writer)),
                 asyncio.create_task(self._pump(up_reader, writer))]
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({*pumps, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            await stop_pumps(pumps)

    async def _upward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(64 * 1024):
                writer.write(data)
                await writer.drain()
                self.sent += len(data)
                if self.sent >= self.hold_after and not self._released.is_set():
                    self.held.set()
                    await self._released.wait()
        except OSError:
            return

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(64 * 1024):
                writer.write(data)
                await writer.drain()
        except OSError:
            return


def container_status(plane: ControlPlane) -> dict[str, Any]:
    pod = plane.get("pod", POD) or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


async def test_a_sigkilled_upload_server_resumes_and_the_client_resends_at_most_one_chunk(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    data = hashlib.shake_256(b"survivor").digest(64 * MiB)
    image.write_bytes(data)
    config = control_plane.get("cdiconfig", "config", namespace="")
    assert config is not None
    proxy = urlparse(config["status"]["uploadProxyURL"])
    relay = HoldingRelay("127.0.0.1", int(proxy.port or 443), hold_after=24 * MiB)
    await relay.start()
    try:
        client = asyncio.create_task(image_upload(
            control_plane, "dv", "survivor", "--size", "256Mi", "--image-path", str(image),
            "--chunk-size", "4Mi", "--uploadproxy-url", f"https://127.0.0.1:{relay.port}"))
        await asyncio.wait_for(relay.held.wait(), 180)
        pid = int(str(container_status(control_plane)["containerID"]).removeprefix("pycdi://"))
        os.killpg(pid, signal.SIGKILL)  # the container: its shim leads the process group
        await asyncio.to_thread(control_plane.wait_for, lambda: container_status(control_plane).get("restartCount")
                                == 1 and "running" in (container_status(control_plane).get("state") or {}),
                                "the restarted upload server")
        relay.release()
        code, out, err = await client
    finally:
        relay.release()
        await relay.close()
    assert code == 0, out + err + control_plane.log_tail()
    assert disk_sha256(control_plane, "survivor", len(data)) == hashlib.sha256(data).hexdigest()
    # one chunk re-sent at most, plus TLS records and HTTP headers (well under 1 %)
    assert relay.sent <= len(data) + CHUNK + len(data) // 100, f"the client sent {relay.sent} bytes for {len(data)}"
    events = control_plane.cdi("get", "events", "-n", "default").stdout
    assert "Resumed the upload after an upload-server restart at byte" in events, events
