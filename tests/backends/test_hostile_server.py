"""Issue 14 (1-3, 13): a server cannot hold a run, fill the memory, or crash the loop.

Each case runs against `fake_server` in the test's own event loop, which is the hard case for
the deadlines: the server writes as fast as the loop lets it, so the client's reads always find
data buffered and never suspend on their own.
"""

from __future__ import annotations

import time

import anyio
import orjson
import pytest
from aiohttp import web

from agent import Agent, Limits
from agent.backends import Done, GenerateOptions, OllamaBackend, TextChunk, Timeouts
from agent.errors import BackendTimeoutError, StreamError
from agent.testing import OllamaEmulator, answer
from tests.backends.fake_server import fake_ollama

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
TOKEN = orjson.dumps({"model": "llama3.1", "response": "x", "done": False}) + b"\n"
EMPTY = orjson.dumps({"model": "llama3.1", "response": "", "done": False}) + b"\n"


def endless(line: bytes) -> web.RequestHandler:  # type: ignore[type-arg]
    """`line` as fast as the socket takes it, forever (well over 30,000 lines/s)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        burst = line * 500
        try:
            while True:
                await response.write(burst)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return response

    return handler


def streamer(*lines: bytes, then_stall: bool = False) -> web.RequestHandler:  # type: ignore[type-arg]
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in lines:
            await response.write(line)
        if then_stall:
            await anyio.sleep(60)
        return response

    return handler


async def collect(
    backend: OllamaBackend, options: GenerateOptions | None = None
) -> tuple[int, int, Done]:
    chunks = chars = 0
    done: Done | None = None
    events = backend.generate(PROMPT, model="llama3.1", options=options or GenerateOptions())
    async for event in events:
        if isinstance(event, TextChunk):
            chunks += 1
            chars += len(event.text)
        else:
            done = event
    assert done is not None
    return chunks, chars, done


# --- 1. deadlines hold whatever the pace -------------------------------------------------------


async def test_total_deadline_holds_on_a_fast_endless_stream() -> None:
    # Empty lines: no text, so neither num_predict nor the size cap ends it first.
    routes = {"/api/generate": endless(EMPTY)}
    async with fake_ollama(routes) as url, OllamaBackend(url, timeouts=Timeouts(total=0.5)) as b:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError, match=r"Timeouts\.total = 0\.5 s"):
            await collect(b)
    assert time.monotonic() - started < 1.5


async def test_outer_cancel_scope_fires_on_a_fast_endless_stream() -> None:
    async with fake_ollama({"/api/generate": endless(EMPTY)}) as url, OllamaBackend(url) as b:
        started = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await collect(b)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1.0  # Ctrl-C and cancellation land within a second


async def test_run_timeout_holds_on_a_fast_endless_stream() -> None:
    limits = Limits(run_timeout=0.5)
    routes = {"/api/generate": endless(EMPTY)}
    async with fake_ollama(routes) as url, Agent(backend=OllamaBackend(url), limits=limits) as a:
        started = time.monotonic()
        result = await a.run("Hi")
    assert result.status == "timeout"
    assert time.monotonic() - started < 1.5


async def test_run_timeout_holds_on_a_stream_that_stalls_mid_answer() -> None:
    # After the first chunk the loop leaves the run's deadline to the backend (no cancel scope
    # per chunk): the backend's timer must end the stall, and the run says "timeout".
    limits = Limits(run_timeout=0.5)
    routes = {"/api/generate": streamer(TOKEN, then_stall=True)}
    async with fake_ollama(routes) as url, Agent(backend=OllamaBackend(url), limits=limits) as a:
        started = time.monotonic()
        result = await a.run("Hi")
    assert result.status == "timeout"
    assert time.monotonic() - started < 1.5


async def test_a_backend_deadline_before_the_run_deadline_stays_an_error() -> None:
    limits = Limits(run_timeout=20)
    routes = {"/api/generate": streamer(TOKEN, then_stall=True)}
    async with fake_ollama(routes) as url:
        backend = OllamaBackend(url, timeouts=Timeouts(between_chunks=0.2))
        async with Agent(backend=backend, limits=limits) as a:
            started = time.monotonic()
            with pytest.raises(BackendTimeoutError, match="next chunk"):
                await a.run("Hi")
    assert time.monotonic() - started < 5


async def test_silence_after_a_line_is_the_next_chunk_deadline() -> None:
    routes = {"/api/generate": streamer(TOKEN, then_stall=True)}
    timeouts = Timeouts(between_chunks=0.2)
    async with fake_ollama(routes) as url, OllamaBackend(url, timeouts=timeouts) as backend:
        with pytest.raises(BackendTimeoutError, match="next chunk"):
            await collect(backend)


# --- 2. size caps --------------------------------------------------------------------------------


async def test_num_predict_is_enforced_on_the_client() -> None:
    async with fake_ollama({"/api/generate": endless(TOKEN)}) as url, OllamaBackend(url) as b:
        _, chars, done = await collect(b, GenerateOptions(num_predict=50))
    # Fifty tokens, a line each (chunks join the lines that arrived together).
    assert chars == 50 * len(orjson.loads(TOKEN)["response"])
    assert done.usage.eval_count == 50
    assert done.done_reason == "length"
    assert "past its num_predict" in " ".join(done.warnings)


async def test_a_huge_line_is_refused_before_it_is_buffered() -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        block = b"x" * (1 << 20)
        try:
            for _ in range(200):  # 200 MB, no newline
                await response.write(block)
        except (ConnectionError, RuntimeError):
            pass
        return response

    routes = {"/api/generate": huge}
    async with fake_ollama(routes) as url, OllamaBackend(url, max_line_bytes=1 << 20) as b:
        with pytest.raises(StreamError, match="a line longer than 1048576 bytes"):
            await collect(b)


async def test_the_completion_size_is_capped() -> None:
    big = orjson.dumps({"response": "y" * 100_000, "done": False}) + b"\n"
    routes = {"/api/generate": streamer(*[big] * 300)}
    async with fake_ollama(routes) as url, OllamaBackend(url, max_completion_chars=10**6) as b:
        _, chars, done = await collect(b)
    assert chars == 1_000_000  # ten whole lines: the eleventh would pass the cap
    assert done.done_reason == "length"
    assert "the size cap" in " ".join(done.warnings)


# --- 3. malformed answers are run errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"[1,2,3]\n", "not a JSON object"),
        (b'"text"\n', "not a JSON object"),
        (b'{"response": 7, "done": false}\n', "a response that is not text"),
        (b"{not json\n", "not JSON"),
    ],
)
async def test_a_malformed_line_is_a_stream_error(line: bytes, says: str) -> None:
    async with (
        fake_ollama({"/api/generate": streamer(TOKEN, line)}) as url,
        OllamaBackend(url) as b,
    ):
        with pytest.raises(StreamError, match=says):
            await collect(b)


async def test_a_malformed_line_ends_the_run_with_an_error_status() -> None:
    routes = {"/api/generate": streamer(b"[1,2,3]\n")}
    async with fake_ollama(routes) as url, Agent("llama3.1", backend=OllamaBackend(url)) as agent:
        with pytest.raises(StreamError) as caught:
            await agent.run("Hi")
    assert caught.value.result.status == "error"  # type: ignore[attr-defined]


# --- 13. idle connections close -------------------------------------------------------------------


async def test_idle_keep_alive_connections_close() -> None:
    async with (
        OllamaEmulator(answer("ok")) as emu,
        OllamaBackend(emu.url, keepalive_expiry=0.3) as backend,
    ):
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(collect, backend)
        assert emu.open_connections >= 1
        deadline = time.monotonic() + 5
        while emu.open_connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        assert emu.open_connections == 0


# --- lines that arrive together -------------------------------------------------------------------


def _line(text: str, **more: object) -> bytes:
    return orjson.dumps({"model": "llama3.1", "response": text, "done": False, **more}) + b"\n"


async def test_lines_that_arrive_together_are_one_chunk_and_still_count_as_tokens() -> None:
    """A read's lines go up as one `TextChunk`; a resumed stream still asks for the tokens
    left (`num_predict`) and counts the ones it had, not the chunks."""
    bodies: list[dict[str, object]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append(orjson.loads(await request.read()))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        if len(bodies) == 1:
            await response.write(_line("a") + _line("b") + _line("c"))  # one write, one read
            await anyio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()  # the stream breaks off: resumed after "abc"
            return response
        final = {"done": True, "done_reason": "length", "eval_count": 2, "prompt_eval_count": 3}
        await response.write(_line("d") + _line("e") + _line("", **final))
        return response

    async with fake_ollama({"/api/generate": handler}) as url, OllamaBackend(url) as b:
        chunks: list[str] = []
        done: Done | None = None
        events = b.generate(PROMPT, model="llama3.1", options=GenerateOptions(num_predict=5))
        async for event in events:
            if isinstance(event, TextChunk):
                chunks.append(event.text)
            else:
                done = event
    assert chunks == ["abc", "de"]
    assert done is not None
    assert done.done_reason == "length"
    assert done.usage.eval_count == 5  # two generated now, three before the break
    assert [body["options"]["num_predict"] for body in bodies] == [5, 2]  # type: ignore[index]
    assert str(bodies[1]["prompt"]).endswith("abc")
