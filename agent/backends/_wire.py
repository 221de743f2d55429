"""HTTP plumbing any backend that talks to a model server shares.

* **Connections.** The HTTP clients of each event loop, closed when that loop ends
  (`Connections`).
* **Transport failures.** What aiohttp (the generate path) and httpx (the `ollama` client's
  management calls) raise when a connection is refused, times out or breaks, classified once
  (`transport_kind`) so each backend only words the message.
* **Streams.** `Dropped` (a stream that broke off and may be sent again) and `closing_iterator`
  (what stops an HTTP stream, and so the generation, on an early exit). Reading one stream under
  deadlines and size caps is `_stream.py`.

**Why clients per event loop.** aiohttp binds its session to the event loop that made it (so
do httpx's pooled connections and anyio's locks once they are waited on). Users make an agent
once and call `anyio.run` more than once (scripts, tests); the second run would use a session of
a closed loop and fail with "Event loop is closed". So everything bound to a loop (the clients,
the concurrency gate, the per-model locks, the thread limiter) lives in an `anyio.lowlevel.RunVar`
and is made the first time it is needed in each loop.

The clients are closed by `aclose()`, or else when their loop shuts down: an async generator
started in that loop holds them, and the loop finalizes every async generator before it closes
(`anyio.run` and `asyncio.run` call `shutdown_asyncgens`, PEP 525); its `finally` closes them,
so connections are not left open behind a finished `anyio.run`.
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

    `make_client`: the loop's new client (closed with the loop or by `aclose()`).
    `concurrency`: the size of the gate (None: no gate). `threads`: worker threads for counting.
    """

    def __init__(
        self,
        make_client: Callable[[], C],
        *,
        concurrency: int | None,
        threads: int = 2,
    ) -> None:
        self._make_client = make_client
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

        closer = _close_at_shutdown(client, forget)
        state = LoopState(
            client=client,
            gate=anyio.Semaphore(self._concurrency) if self._concurrency else None,
            limiter=anyio.CapacityLimiter(self._threads),
            closer=closer,
        )
        self._state.set(state)
        self.made += 1
        await anext(closer)  # started in this loop, so this loop's shutdown finalizes it
        return state

    async def aclose(self) -> None:
        """Close the running loop's clients (another loop's close when that loop ends)."""
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
    aiohttp.ClientError,  # the generate path
    httpx.RequestError,  # the `ollama` client's calls: connect, read, protocol errors, timeouts
    ConnectionError,  # the `ollama` client's own "Failed to connect to Ollama", socket resets
)
"""What a broken or unreachable connection raises; `transport_kind` tells which it is."""


def transport_kind(exc: BaseException) -> TransportKind | None:
    """What kind of transport failure `exc` is, or None if it is not one."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "unreachable"
    if isinstance(exc, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, aiohttp.ServerTimeoutError | httpx.TimeoutException):
        return "read_timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return "dropped"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return "unreachable"
    if type(exc) is ConnectionError:  # the `ollama` client's "Failed to connect to Ollama"
        return "unreachable"
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return "dropped"  # a protocol error, a reset, a broken pipe
    return None


def unreachable_reason(exc: BaseException) -> str:
    """Why nothing answered, in words: the OS error under the wrapper (the `ollama` client
    raises a bare `ConnectionError` whose context holds the real cause)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    for item in reversed(seen):
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
