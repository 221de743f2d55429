"""`_wire`: the connection pool per event loop, connect timeouts, which errors are translated."""

from __future__ import annotations

import contextlib
import gc
import socket
import sys
import threading
import time
from collections.abc import Iterator

import aiohttp
import anyio
import anyio.to_thread
import httpx
import pytest

from agent.backends import GenerateOptions, OllamaBackend, TextChunk, Timeouts
from agent.backends._context import describe
from agent.backends._wire import Connections
from agent.errors import BackendTimeoutError
from agent.testing import OllamaEmulator, answer

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
SHOW = {
    "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
    "capabilities": ["completion", "tools"],
}


async def text_of(backend: OllamaBackend) -> str:
    parts = []
    async for event in backend.generate(PROMPT, model="llama3.1", options=GenerateOptions()):
        if isinstance(event, TextChunk):
            parts.append(event.text)
    return "".join(parts)


async def three_at_once(backend: OllamaBackend) -> list[str]:
    texts: list[str] = []

    async def one() -> None:
        texts.append(await text_of(backend))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)  # with concurrency=1 two of them wait on the gate
    return texts


def wait_until_closed(emu: OllamaEmulator) -> int:
    """The emulator's open connections, once they drop to 0 or after 5 s (generous)."""
    deadline = time.monotonic() + 5.0
    while emu.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    return emu.open_connections


def test_one_backend_serves_one_anyio_run_after_another() -> None:
    # Scripts make an agent once and call anyio.run twice; the first loop's aiohttp session
    # (and a gate waited on in it) must not leak into the second.
    with OllamaEmulator(answer("Hello there.")).start_in_thread() as emu:
        backend = OllamaBackend(emu.url, concurrency=1)
        first = anyio.run(three_at_once, backend)
        # Nobody called aclose(): the pool was closed when its event loop ended.
        assert wait_until_closed(emu) == 0
        second = anyio.run(three_at_once, backend)
        assert wait_until_closed(emu) == 0
    assert first == second == ["Hello there."] * 3


def test_event_loops_in_two_threads_each_keep_their_own_clients() -> None:
    # The state of the last loop asked is kept for speed: loops taking turns must still each
    # get their own (an aiohttp session used from another loop fails).
    connections: Connections[_Client] = Connections(_Client, concurrency=None)
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    turns = [threading.Event(), threading.Event()]

    async def ask(name: str, mine: threading.Event, theirs: threading.Event) -> None:
        for _ in range(5):
            await anyio.to_thread.run_sync(mine.wait)
            mine.clear()
            seen[name].add(id(await connections.current()))
            seen[name].add(id(await connections.current()))
            theirs.set()

    threads = [
        threading.Thread(target=anyio.run, args=(ask, "a", turns[0], turns[1])),
        threading.Thread(target=anyio.run, args=(ask, "b", turns[1], turns[0])),
    ]
    for thread in threads:
        thread.start()
    turns[0].set()
    for thread in threads:
        thread.join(10)
    assert len(seen["a"]) == len(seen["b"]) == 1
    assert seen["a"] != seen["b"]
    assert connections.made == 2


class _Client:
    async def close(self) -> None:
        pass


@pytest.mark.anyio
async def test_a_closed_backend_opens_a_new_pool_when_used_again() -> None:
    async with OllamaEmulator(answer("ok")) as emu:
        backend = OllamaBackend(emu.url)
        assert await text_of(backend) == "ok"
        await backend.aclose()
        assert await text_of(backend) == "ok"
        await backend.aclose()


# --- only transport failures and unreadable answers are translated; bugs propagate ------------


def broken_backend(fail_on: str) -> OllamaBackend:
    """The `ollama` client's calls: a transport that fails with a bug, not a network problem."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == fail_on:
            raise LookupError("a bug, not a network problem")
        return httpx.Response(200, json=SHOW)

    return OllamaBackend("http://127.0.0.1:9", transport=httpx.MockTransport(handler))


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/api/show", "/api/pull"])
async def test_errors_that_are_not_the_servers_propagate(path: str) -> None:
    async with broken_backend(path) as backend:

        async def call() -> object:
            if path == "/api/pull":
                return [p async for p in backend.pull("llama3.1")]
            return await backend.model_info("llama3.1")

        with pytest.raises(LookupError, match="a bug"):
            await call()


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/api/version", "/api/generate"])
async def test_errors_that_are_not_the_servers_propagate_on_aiohttp(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: bytes) -> object:
        raise LookupError("a bug, not a network problem")

    async with OllamaEmulator(answer("ok")) as emu, OllamaBackend(emu.url) as backend:
        if path == "/api/generate":
            await backend.model_info("llama3.1")  # /api/show and /api/version first
        monkeypatch.setattr("agent.backends._ollama_api.loads", broken)
        with pytest.raises(LookupError, match="a bug"):
            await text_of(backend)


# --- connect timeouts ---------------------------------------------------------------------------


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: a SYN gets no answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on a full queue")
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_connect_timeout_through_loopback(full_backlog: int, transport: str) -> None:
    backend = OllamaBackend(
        f"http://127.0.0.1:{full_backlog}",
        timeouts=Timeouts(connect=0.3, request=30.0),
        transport=httpx.AsyncHTTPTransport() if transport == "httpx" else None,
    )
    async with backend:
        with pytest.raises(BackendTimeoutError, match=r"connecting .* longer than 0\.3 s"):
            await backend.model_info("llama3.1")


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs on a full queue")
async def test_connect_timeout_while_streaming(full_backlog: int) -> None:
    backend = OllamaBackend(f"http://127.0.0.1:{full_backlog}", timeouts=Timeouts(connect=0.3))
    # Described already (as after an earlier request): the next connection is the stream's.
    info = describe("llama3.1", model_info=SHOW["model_info"], capabilities=(), server_version="")  # type: ignore[arg-type]
    backend._server.info["llama3.1"] = info
    async with backend:
        with pytest.raises(BackendTimeoutError, match=r"longer than 0\.3 s.*Timeouts\.connect"):
            await text_of(backend)


@contextlib.contextmanager
def garbage_kept() -> Iterator[list[object]]:
    """What the collector finds unreachable (reference cycles) during the block."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.anyio
async def test_finished_requests_leave_no_response_for_the_garbage_collector() -> None:
    # A reference cycle per request (httpx ties a response to its stream) made a quarter of
    # the client's CPU garbage collection under hundreds of runs: none may come back on the
    # generate path (the `ollama` client's rare calls may leave theirs to the collector).
    async with OllamaEmulator(answer("Hello there.")) as emu, OllamaBackend(emu.url) as backend:
        assert await text_of(backend) == "Hello there."  # the tokenizer, /api/show, a connection
        with garbage_kept() as garbage:
            for _ in range(5):
                assert await text_of(backend) == "Hello there."
    kinds = (httpx.Response, httpx.Request, aiohttp.ClientResponse, aiohttp.RequestInfo)
    assert [o for o in garbage if isinstance(o, kinds)] == []
