"""HTTP plumbing any backend that talks to a model server shares.

* **Connections.** One HTTP client per event loop, closed when that loop ends (`Connections`).
* **Transport failures.** What httpx and aiohttp raise when a connection is refused, times out
  or breaks, classified once (`transport_kind`) so each backend only words the message.
* **Streams.** `Dropped` (a stream that broke off and may be sent again) and `closing_iterator`
  (what stops an HTTP stream, and so the generation, on an early exit).

**Why a client per event loop.** aiohttp binds its session to the event loop that made it (so
do httpx's pooled connections and anyio's locks once they are waited on). Users make an agent
once and call `anyio.run` more than once (scripts, tests); the second run would use a session of
a closed loop and fail with "Event loop is closed". So everything bound to a loop (the client,
the concurrency gate, the per-model locks, the thread limiter) lives in an `anyio.lowlevel.RunVar`
and is made the first time it is needed in each loop.

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

**Why the cause chain decides a failure's kind.** The `ollama` client surfaces a transport
failure in several shapes (PROTOCOL.md §4): the builtin `ConnectionError` for a refused
non-streaming call, a raw `httpx.ConnectError` when streaming, `httpx.RemoteProtocolError` for
a stream cut short. Through `httpx_aiohttp` the httpx type can even mislead: a refused
connection arrives as `httpx.ConnectTimeout` whose cause is aiohttp's `ClientConnectorError`.
So the cause chain is read first, the outer type last.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import aiohttp
import anyio
import anyio.lowlevel
import httpx

_ids = itertools.count()


class Client(Protocol):
    """What `Connections` needs of a client: that it can be closed."""

    async def close(self) -> None: ...


C = TypeVar("C", bound=Client)


@dataclass(frozen=True, kw_only=True)
class LoopState(Generic[C]):
    """What the backend uses inside one event loop."""

    client: C
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
    client: Client, forget: Callable[[], None]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        forget()  # drop the loop's state: it would otherwise keep the closed loop alive
        await client.close()


class Connections(Generic[C]):
    """Makes the `LoopState` of the running event loop on first use.

    `make_client`: a new client (with its own transport when `owns_transport`; a transport the
    caller passed is shared by every loop and only closed by `aclose()`).
    `concurrency`: the size of the gate (None: no gate). `threads`: worker threads for counting.
    """

    def __init__(
        self,
        make_client: Callable[[], C],
        *,
        owns_transport: bool,
        concurrency: int | None,
        threads: int = 2,
    ) -> None:
        self._make_client = make_client
        self._owns_transport = owns_transport
        self._concurrency = concurrency
        self._threads = threads
        self._state: anyio.lowlevel.RunVar[LoopState[C] | None] = anyio.lowlevel.RunVar(
            f"backend-connections-{next(_ids)}", None
        )
        self.made = 0  # clients made so far (one per event loop that used this backend)

    async def current(self) -> LoopState[C]:
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
            await state.client.close()


# --- transport failures ---------------------------------------------------------------------------

TransportKind = Literal["unreachable", "dropped", "connect_timeout", "read_timeout"]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.RequestError,  # connect, read, write, protocol errors and timeouts, through httpx
    aiohttp.ClientError,  # what `httpx_aiohttp` passes through without mapping it
    ConnectionError,  # the client's own "Failed to connect to Ollama", and socket resets
)
"""What a broken or unreachable connection raises; `transport_kind` tells which it is."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _aiohttp_kind(exc: BaseException) -> TransportKind | None:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "unreachable"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return "read_timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "dropped"
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionError):
        return "dropped"
    return None


def _httpx_kind(exc: BaseException) -> TransportKind | None:
    if isinstance(exc, httpx.ConnectError):
        return "unreachable"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "read_timeout"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "dropped"
    if isinstance(exc, httpx.NetworkError):
        return "dropped"
    if type(exc) is ConnectionError:  # the client's own "Failed to connect to Ollama"
        return "unreachable"
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "dropped"
    return None


def transport_kind(exc: BaseException) -> TransportKind | None:
    """What kind of transport failure `exc` is, or None if it is not one."""
    chain = _chain(exc)
    for item in chain:
        if (kind := _aiohttp_kind(item)) is not None:
            return kind
    for item in chain:
        if (kind := _httpx_kind(item)) is not None:
            return kind
    return None


def unreachable_reason(exc: BaseException) -> str:
    """Why nothing answered, in words: the OS error at the bottom of the chain, not the wrapper's
    type (through `httpx_aiohttp` a refused connection is dressed as `ConnectTimeout`)."""
    for item in reversed(_chain(exc)):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "unknown host"
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
    return type(exc).__name__


# --- streams --------------------------------------------------------------------------------------


class Dropped(Exception):
    """The stream broke off; safe to send again (the backend decides whether to)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@contextlib.asynccontextmanager
async def closing_iterator(iterator: AsyncIterator[Any]) -> AsyncGenerator[None, None]:
    """Close an async generator on the way out (what stops an HTTP stream on early exit)."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
