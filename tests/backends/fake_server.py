"""A scriptable HTTP server for the answers neither Ollama nor the emulator gives: each path's
handler is an aiohttp.web handler written in the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SHOW = {
    "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
    "capabilities": ["completion", "tools"],
}


async def show(request: web.Request) -> web.StreamResponse:
    return web.json_response(SHOW)


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response({"version": "0.12.6"})


async def ndjson(request: web.Request, *lines: bytes) -> web.StreamResponse:
    """A streamed 200 answer made of `lines` (each written as it is)."""
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    for line in lines:
        await response.write(line)
    return response


@contextlib.asynccontextmanager
async def fake_ollama(routes: Mapping[str, Handler]) -> AsyncIterator[str]:
    """Serve `routes` (path → handler; `/api/show` and `/api/version` answer by default) on a
    free loopback port; yields the base URL."""
    app = web.Application()
    table = {"/api/show": show, "/api/version": version, **routes}
    for path, handler in table.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
