"""One HTTP client per event loop, closed when that loop ends.

aiohttp binds its session to the event loop that made it (so do httpx's pooled connections and
anyio's locks once they are waited on). Users make an agent once and call `anyio.run` more than
once (scripts, tests); the second run would use a session of a closed loop and fail with
"Event loop is closed". So everything bound to a loop (the client, the concurrency gate, the
per-model locks, the thread limiter) lives in an `anyio.lowlevel.RunVar` and is made the first
time it is needed in each loop.

The client is closed by `aclose()`, or else when its loop shuts down: an async generator
started in that loop holds it, and the loop finalizes every async generator before it closes
(`anyio.run` and `asyncio.run` call `shutdown_asyncgens`, PEP 525); its `finally` closes the
client, so connections are not left open behind a finished `anyio.run`.

`release_stream` is the client's response hook: httpx binds each response's stream to the
response (`Response.stream` → `BoundAsyncStream` → `Response`), a reference cycle that keeps the
response, its request, headers and the whole aiohttp response alive until the garbage collector
runs (about 35 objects a request). Under hundreds of concurrent runs that made a quarter of the
client's CPU time garbage collection. The hook puts a wrapper in between that lets go of the
bound stream once it is closed, so all of it is freed by reference counting instead.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import httpx
import ollama

_ids = itertools.count()


@dataclass(frozen=True, kw_only=True)
class LoopState:
    """What the backend uses inside one event loop."""

    client: ollama.AsyncClient
    gate: anyio.Semaphore | None
    limiter: anyio.CapacityLimiter  # worker threads for counting long prompts
    locks: dict[str, anyio.Lock] = field(default_factory=dict)  # per model, for `/api/show`
    warm_up: anyio.Lock = field(default_factory=anyio.Lock)  # one tokenizer load, not one each
    closer: AsyncGenerator[None, None] | None = None


class _ReleasingStream(httpx.AsyncByteStream):
    """A response stream that drops the stream it wraps once closed (see the module docstring)."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream: httpx.AsyncByteStream | None = stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._stream is None:
            raise httpx.StreamClosed()
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


async def release_stream(response: httpx.Response) -> None:
    """httpx response hook: break the response ↔ stream cycle when the response is closed."""
    if isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = _ReleasingStream(response.stream)


async def _close_at_shutdown(
    client: ollama.AsyncClient, forget: Callable[[], None]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        forget()  # drop the loop's state: it would otherwise keep the closed loop alive
        await client.close()  # type: ignore[no-untyped-call]


class Connections:
    """Makes the `LoopState` of the running event loop on first use.

    `make_client`: a new `ollama.AsyncClient` (with its own transport when `owns_transport`;
    a transport the caller passed is shared by every loop and only closed by `aclose()`).
    `concurrency`: the size of the gate (None: no gate). `threads`: worker threads for counting.
    """

    def __init__(
        self,
        make_client: Callable[[], ollama.AsyncClient],
        *,
        owns_transport: bool,
        concurrency: int | None,
        threads: int = 2,
    ) -> None:
        self._make_client = make_client
        self._owns_transport = owns_transport
        self._concurrency = concurrency
        self._threads = threads
        self._state: anyio.lowlevel.RunVar[LoopState | None] = anyio.lowlevel.RunVar(
            f"ollama-connections-{next(_ids)}", None
        )
        self.made = 0  # clients made so far (one per event loop that used this backend)

    async def current(self) -> LoopState:
        """The state of the running event loop, made now if this loop has none yet."""
        state = self._state.get()
        if state is not None:
            return state
        client = self._make_client()

        def forget() -> None:
            if self._state.get() is state:
                self._state.set(None)

        closer = _close_at_shutdown(client, forget) if self._owns_transport else None
        state = LoopState(
            client=client,
            gate=anyio.Semaphore(self._concurrency) if self._concurrency else None,
            limiter=anyio.CapacityLimiter(self._threads),
            closer=closer,
        )
        self._state.set(state)
        self.made += 1
        if closer is not None:
            await anext(closer)  # started in this loop, so this loop's shutdown finalizes it
        return state

    async def aclose(self) -> None:
        """Close the running loop's client (another loop's closes when that loop ends)."""
        state = self._state.get()
        if state is None:
            return
        self._state.set(None)
        if state.closer is not None:
            await state.closer.aclose()  # its `finally` closes the client
        else:
            await state.client.close()  # type: ignore[no-untyped-call]
