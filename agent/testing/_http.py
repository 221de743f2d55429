"""A small HTTP/1.1 server on anyio streams and h11, with the control an emulator needs.

Ordinary servers hide the socket; an emulator of Ollama must be able to send half a chunk and
hang up, stall, notice that the client went away, and refuse connections. `HttpServer` gives each
request to a handler together with a `Responder` that can do all of that, keeps connections
alive between requests the way Ollama (Go's net/http) does, and runs on asyncio or trio.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import anyio
import anyio.abc
import h11

_MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class HttpRequest:
    """One request as received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class ClientGone(Exception):
    """The client closed the connection while a response was being written."""


class Responder:
    """Writes one response; knows whether the client is still there.

    The status line and headers go out with the first body bytes (as Go's net/http sends them),
    and the end of a chunked body with the last line: a socket write less each, per response,
    which no client can tell apart. Each line in between is still one write, as Ollama flushes
    every token.
    """

    def __init__(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, *, head: bool = False
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._head = head
        self._pending = b""  # the status line and headers, until the first write
        self.started = False
        self.aborted = False
        self.close_after = False  # close the connection (orderly) once the response is sent
        self.client_gone = anyio.Event()

    async def start(self, status: int, content_type: str, *, length: int | None = None) -> None:
        """Begin the response (chunked unless `length` is given); sent with the first write."""
        headers = [("Content-Type", content_type), ("Date", formatdate(usegmt=True))]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        else:
            headers.append(("Transfer-Encoding", "chunked"))
        self.started = True
        self._pending = self._conn.send(h11.Response(status_code=status, headers=headers)) or b""

    async def write(self, data: bytes, *, end: bool = False) -> None:
        """Send body bytes (one chunk when chunked, flushed at once); `end` finishes too."""
        out = self._pending
        self._pending = b""
        if data and not self._head:
            out += self._conn.send(h11.Data(data=data)) or b""
        if end:
            out += self._conn.send(h11.EndOfMessage()) or b""
        if out:
            await self._stream_send(out)

    async def end(self) -> None:
        """Finish the response; the connection stays open for the next request."""
        await self.write(b"", end=True)

    async def respond(self, status: int, content_type: str, body: bytes) -> None:
        """A whole response with a Content-Length, in one write."""
        await self.start(status, content_type, length=len(body))
        await self.write(body, end=True)

    async def json(self, status: int, payload: Any) -> None:
        """A whole `application/json; charset=utf-8` response, as Go's gin writes it."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        await self.respond(status, "application/json; charset=utf-8", body)

    async def abort(self, partial: bytes = b"") -> None:
        """Write `partial` as the start of a chunk that never completes, then reset the socket."""
        self.aborted = True
        if partial and self.started:
            # A chunk header promising more bytes than follow: the client sees a truncated chunk.
            raw = self._pending + f"{len(partial) * 2:x}\r\n".encode() + partial
            self._pending = b""
            await self._stream_send(raw)
        await self.hang_up()

    async def hang_up(self) -> None:
        """Close the socket at once, with a reset rather than an orderly shutdown."""
        self.aborted = True
        sock = self._stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None:
            # SO_LINGER 0: the close sends RST, the way a crashed server looks to the client.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self._stream.aclose()

    async def _stream_send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self.client_gone.set()
            raise ClientGone from exc


Handler = Callable[[HttpRequest, Responder], Awaitable[None]]

# What a connection ends with when the client goes away or breaks the protocol: not a bug.
_CLIENT_GONE = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ClientGone,
    OSError,
    h11.RemoteProtocolError,
)


def _leaves(exc: Exception) -> list[Exception]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, ExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class HttpServer:
    """Serves `handler` on 127.0.0.1; `port=0` picks a free port."""

    def __init__(self, handler: Handler, *, port: int = 0) -> None:
        self._handler = handler
        self.port = port
        self._tg: anyio.abc.TaskGroup | None = None
        self._accepting: anyio.CancelScope | None = None
        self._stopped = anyio.Event()
        self._connections: set[anyio.CancelScope] = set()
        self.errors: list[Exception] = []

    @property
    def open_connections(self) -> int:
        """Client connections open now, idle keep-alive ones included."""
        return len(self._connections)

    async def __aenter__(self) -> HttpServer:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.listen()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_listening()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    async def listen(self) -> None:
        """Start accepting connections (again) on the same port."""
        if self._accepting is not None:
            return
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        assert self._tg is not None
        scope = anyio.CancelScope()
        stopped = anyio.Event()
        self._accepting = scope
        self._stopped = stopped
        self._tg.start_soon(self._accept_loop, listener, scope, stopped)

    async def stop_listening(self) -> None:
        """Stop accepting and drop every open connection: clients now get 'connection refused'."""
        if self._accepting is not None:
            self._accepting.cancel()
            await self._stopped.wait()
            self._accepting = None
        for scope in list(self._connections):
            scope.cancel()

    async def _accept_loop(
        self,
        listener: anyio.abc.Listener[anyio.abc.SocketStream],
        scope: anyio.CancelScope,
        stopped: anyio.Event,
    ) -> None:
        # The loop owns the listener: cancelling its scope stops `serve` and closes the socket.
        try:
            with scope:
                async with listener:
                    await listener.serve(self._serve_connection)
        finally:
            stopped.set()

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        with anyio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                async with stream:
                    await self._connection_loop(stream)
            except _CLIENT_GONE:
                pass
            except Exception as exc:  # a bug in a handler must not take the server down
                self.errors.extend(e for e in _leaves(exc) if not isinstance(e, _CLIENT_GONE))
            finally:
                self._connections.discard(scope)

    async def _connection_loop(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_BODY)
        while True:
            request = await _read_request(conn, stream)
            if request is None:
                return
            responder = Responder(conn, stream, head=request.method == "HEAD")
            await self._run_handler(request, responder, conn, stream)
            if responder.aborted or responder.client_gone.is_set() or responder.close_after:
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            if conn.our_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _run_handler(
        self,
        request: HttpRequest,
        responder: Responder,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
    ) -> None:
        async def watch(scope: anyio.CancelScope) -> None:
            # While the handler runs, the only thing a client can send is EOF (it went away) or,
            # rarely, the next pipelined request, which h11 keeps for the next cycle.
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                responder.client_gone.set()
                scope.cancel()
                return
            except OSError:
                responder.client_gone.set()
                scope.cancel()
                return
            conn.receive_data(data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            with contextlib.suppress(ClientGone):
                await self._handler(request, responder)
            tg.cancel_scope.cancel()


async def _read_request(conn: h11.Connection, stream: anyio.abc.SocketStream) -> HttpRequest | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body.extend(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
            return HttpRequest(
                method=head.method.decode("ascii"),
                path=head.target.decode("latin-1").split("?", 1)[0],
                headers=headers,
                body=bytes(body),
            )
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
