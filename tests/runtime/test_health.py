"""Health endpoints: healthz always, readyz only while the manager is active."""

from __future__ import annotations

import aiohttp

from cdi.runtime.health import HealthServer


async def test_healthz_and_readyz() -> None:
    ready = False
    server = HealthServer(lambda: ready)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.port}"
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
            ready = True
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200 and await response.text() == "ok"
    finally:
        await server.stop()
