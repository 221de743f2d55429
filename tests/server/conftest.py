"""A real HTTP server for the tests: uvicorn in a thread of its own, serving an `AgentServer`
whose agent talks to the emulator (both on that thread's event loop), on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import uvicorn

from agent import Agent, SQLiteStore, tool
from agent.server import AgentServer
from agent.testing import OllamaEmulator, Script, ScriptRequest, tool_call_text

from ..loop.helpers import TODAY, add

T = TypeVar("T")
RELEASE = threading.Event()  # `slow` waits for it (or 30 s)


@tool
async def slow() -> str:
    """Take a long time."""
    await anyio.to_thread.run_sync(RELEASE.wait, 30)
    return "slow done"


def adding(request: ScriptRequest) -> str:
    """Call `add` (or `slow` when asked to be slow), then answer with the result."""
    if request.tool_results:
        return f"The answer is {request.tool_results[-1]}.<|eot_id|>"
    if "slowly" in request.last_user:
        return tool_call_text("slow", {})
    return tool_call_text("add", {"a": 2, "b": 40})


@dataclass
class Running:
    url: str
    server: AgentServer
    emulator: OllamaEmulator
    loop: asyncio.AbstractEventLoop
    stop: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the server's loop, from the test."""

        async def wrapped() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(60)


def start(
    tmp_path: Path, *, script: Script = adding, api_keys: tuple[str, ...] = (), **emu: Any
) -> Running:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with OllamaEmulator(script, **emu) as emulator:
            store = SQLiteStore(tmp_path / "sessions.db")
            async with Agent(
                host=emulator.url, tools=[add, slow], today=TODAY, store=store
            ) as agent:
                server = AgentServer(agent, api_keys=api_keys, grace=5)
                http = uvicorn.Server(uvicorn.Config(server, log_level="warning", lifespan="on"))
                box.update(server=server, emulator=emulator, http=http)
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await http.serve(sockets=[sock])
            await store.aclose()

    thread = threading.Thread(target=lambda: anyio.run(main), daemon=True)
    thread.start()
    assert ready.wait(30)

    def stop() -> None:
        box["http"].should_exit = True
        thread.join(30)
        sock.close()

    return Running(
        url=f"http://127.0.0.1:{port}",
        server=box["server"],
        emulator=box["emulator"],
        loop=box["loop"],
        stop=stop,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Running]:
    RELEASE.clear()
    running = start(tmp_path)
    try:
        _wait_until_up(running.url)
        yield running
    finally:
        RELEASE.set()
        running.stop()


def _wait_until_up(url: str) -> None:
    import httpx

    for _ in range(200):
        try:
            httpx.get(url + "/v1/models", timeout=1)
            return
        except httpx.TransportError:
            threading.Event().wait(0.05)
    raise AssertionError("the server did not come up")
