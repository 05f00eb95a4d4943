"""`GET /metrics` for a process's registry, in Prometheus' text exposition format.

`MetricsServer` is a small aiohttp listener that `cdi serve --metrics-port` and `cdi controller
--metrics-port` start; `metrics_handler` is the same route for a listener that already exists (the
controller's health server, when both share upstream's port 8080). The series themselves are set by the
controllers on `cdi.monitoring.metrics.ControlPlaneMetrics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cdi.contracts.metrics import METRICS_PATH

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # Collection only reads in-memory values: cheap enough to run on the event loop.
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return handle


class MetricsServer:
    """Serves `registry` on `host:port` (0: a free port, read back from `port` once started)."""

    def __init__(self, registry: CollectorRegistry, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._registry, self._host, self.port = registry, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(METRICS_PATH, metrics_handler(self._registry))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
