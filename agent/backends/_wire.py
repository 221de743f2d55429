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

import asyncio
import contextlib
import itertools
import math
import socket
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import aiohttp
import anyio
import anyio.lowlevel
import httpx

_ids = itertools.count()


USER_AGENT = f"llama-agent/0.1 (aiohttp/{aiohttp.__version__})"


def http_session(
    *,
    connect: float | None,
    max_connections: int,
    keepalive_expiry: float,
    api_key: str | None = None,
) -> aiohttp.ClientSession:
    """The aiohttp session a backend streams on (one per event loop, see `Connections`).

    Only connecting has an aiohttp timeout: reads are bounded by `Watchdog` (streams) and
    `Timeouts.request` (small calls). `api_key`: sent as `Authorization: Bearer` when not empty.
    """
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=keepalive_expiry),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect),
        headers=headers,
    )


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
        # The last loop asked and its state: a `RunVar` look-up costs microseconds, and the
        # generate path asks every step. The loop's shutdown clears it (`forget`); the loop is
        # held weakly, as the loop's own id would be reused once it is gone.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], LoopState[C]] | None = None

    async def current(self) -> LoopState[C]:
        """The state of the running event loop, made now if this loop has none yet."""
        last = self._last
        loop = asyncio._get_running_loop()  # None on trio: the RunVar alone then
        if last is not None and loop is not None and last[0]() is loop:
            return last[1]
        state = self._state.get()
        if state is not None:
            self._remember(loop, state)
            return state
        client = self._make_client()

        def forget() -> None:
            self._last = None
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
        self._remember(loop, state)
        self.made += 1
        await anext(closer)  # started in this loop, so this loop's shutdown finalizes it
        return state

    def _remember(self, loop: asyncio.AbstractEventLoop | None, state: LoopState[C]) -> None:
        if loop is not None:
            self._last = (weakref.ref(loop), state)

    async def aclose(self) -> None:
        """Close the running loop's clients (another loop's close when that loop ends)."""
        state = self._state.get()
        if state is None:
            return
        self._state.set(None)
        self._last = None
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


Deadline = Literal["first chunk", "next chunk", "total"]

CHECKPOINT = 0.005
"""Longest time (s) a stream is read without yielding to the event loop."""


class Expired(Exception):
    """A deadline of the stream passed (`which`)."""

    def __init__(self, which: Deadline) -> None:
        super().__init__(which)
        self.which: Deadline = which


class LineTooLong(Exception):
    """A line grew past the cap without ending."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


READ_ERRORS: tuple[type[Exception], ...] = (Expired, LineTooLong, *TRANSPORT_ERRORS)
"""What `Lines.batch` raises."""


class Watchdog:
    """One timer for a stream's deadlines (absolute loop times; `inf`: none).

    `first_at`: the first data; `between`: the longest silence after it (None: unbounded);
    `total_at`: the end of the whole call. The reader calls `begin(now)` at the first data,
    then sets `last` at each read.
    """

    def __init__(
        self,
        content: aiohttp.StreamReader,
        *,
        first_at: float,
        between: float | None,
        total_at: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._between = between
        self._total_at = total_at
        self.last: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._arm(min(first_at, total_at))

    def _arm(self, when: float) -> None:
        self._handle = self._loop.call_at(when, self._fire) if when < math.inf else None

    def _fire(self) -> None:
        now = self._loop.time()
        last = self.last
        if now >= self._total_at:
            which: Deadline = "total"
        elif last is None:
            which = "first chunk"
        elif self._between is None:
            self._arm(self._total_at)
            return
        elif now - last < self._between:
            self._arm(min(last + self._between, self._total_at))
            return
        else:
            which = "next chunk"
        self._handle = None
        self._content.set_exception(Expired(which))

    def begin(self, now: float) -> None:
        """The first data came: from now on the timer watches the silence between lines."""
        self.last = now
        if self._between is not None:
            self.cancel()
            self._arm(min(now + self._between, self._total_at))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Lines:
    """The complete lines of `content`, a batch per read (see the module docstring)."""

    def __init__(
        self,
        content: aiohttp.StreamReader,
        *,
        first_at: float,
        between: float | None,
        total_at: float,
        max_line: int,
    ) -> None:
        self._content = content
        self._time = asyncio.get_running_loop().time
        self._total_at = total_at
        self._max_line = max_line
        self._partial = b""
        self._yielded = self._time()
        self.watchdog = Watchdog(content, first_at=first_at, between=between, total_at=total_at)

    async def batch(self) -> list[bytes]:
        """The next complete lines (never empty), or `[]` at the end of the body.

        Raises `Expired`, `LineTooLong`, or what aiohttp raises for a broken connection.
        """
        content = self._content
        while True:
            data = content.read_nowait()
            now = self._time()
            if data:
                if now >= self._total_at:
                    raise Expired("total")
                if now - self._yielded >= CHECKPOINT:
                    await anyio.lowlevel.checkpoint()  # the fast-stream case: let the loop run
                    self._yielded = now
            else:
                data = await content.readany()  # suspends: the loop runs meanwhile
                now = self._yielded = self._time()
                if not data:  # the end of the body: a last line without its newline counts
                    rest, self._partial = self._partial, b""
                    return [rest] if rest.strip() else []
            watchdog = self.watchdog
            if watchdog.last is None:
                watchdog.begin(now)
            else:
                watchdog.last = now
            if self._partial:
                data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > self._max_line:
                raise LineTooLong(self._max_line)
            if len(data) > self._max_line and any(len(x) > self._max_line for x in lines):
                raise LineTooLong(self._max_line)
            if lines:
                return lines

    async def drain(self, limit: int = 65536) -> bool:
        """Read what is left of the body (at most `limit` bytes); True if it ended cleanly, so
        the connection can serve the next request."""
        content = self._content
        while not content.at_eof():
            data = await content.readany()
            limit -= len(data)
            if not data or limit < 0:
                break
        return content.at_eof() and limit >= 0

    def close(self) -> None:
        self.watchdog.cancel()
