"""Fixtures for the host-assisted clone tests: the clone's client certificate (CN in upstream's
`<srcNs>/<src>-<tgtNs>/<tgt>` form), an impostor's, and in-process upload servers in clone-target mode
that are stopped after each test; for the controller tests, the controller suite's `cluster` fixture
(embedded and real API server) and a clock whose monotonic time the test advances."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdi.contracts.upload_protocol import UPLOAD_CLIENT_NAME
from tests.controllers.conftest import cluster  # noqa: F401  (the fixture, on both backends)
from tests.hostclone.support import CLIENT
from tests.support.tls import ClientCert, TestPKI, make_client_cert
from tests.upload.support import ServerHandle, start_server

StartTarget = Callable[..., Awaitable[ServerHandle]]


@pytest.fixture(scope="session")
def clone_cert(pki: TestPKI) -> ClientCert:
    return make_client_cert(pki, CLIENT)


@pytest.fixture(scope="session")
def proxy_cert(pki: TestPKI) -> ClientCert:
    """A valid certificate of the same CA, but for the upload proxy, not for this clone."""
    return make_client_cert(pki, UPLOAD_CLIENT_NAME)


@pytest.fixture
async def clone_target(pki: TestPKI, tmp_path: Path) -> AsyncIterator[StartTarget]:
    started: list[ServerHandle] = []

    async def start(**env: str) -> ServerHandle:
        handle = await start_server(pki, tmp_path / f"target{len(started)}",
                                    {"CLIENT_NAME": CLIENT, "FILESYSTEM_OVERHEAD": "0", **env})
        started.append(handle)
        return handle

    yield start
    for handle in started:
        await handle.server.stop()


class SteppingClock:
    def __init__(self) -> None:
        self.elapsed = 100.0

    def now(self) -> datetime:
        return datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@pytest.fixture
def stepping_clock() -> SteppingClock:
    return SteppingClock()
