"""Health endpoints for a control-plane process, as controller-runtime serves them.

`/healthz` answers 200 while the process's event loop runs; `/readyz` answers 200 once the manager
is active (it holds its lock and its caches have synced) and 503 before that or while it stands by,
so a Deployment's readiness probe sends traffic only to the leader. `cdi serve` and `cdi controller`
start one with `--health-port`. Other GET routes may share the listener (`routes`): `cdi controller`
serves `/metrics` here unless `--metrics-port` names another port, as upstream serves both on 8080.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web


class HealthServer:
    def __init__(self, ready: Callable[[], bool], *, host: str = "127.0.0.1", port: int = 0,
                 routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None) -> None:
        self._ready, self._host, self._port = ready, host, port
        self._routes = dict(routes or {})
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for path, handler in self._routes.items():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: not the active controller, or caches not synced")
