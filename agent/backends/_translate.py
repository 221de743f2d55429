"""Classify what the `ollama` client, httpx and aiohttp raise, so the backend can translate it.

The client surfaces a transport failure in several shapes (PROTOCOL.md §4): the builtin
`ConnectionError` for a refused non-streaming call, a raw `httpx.ConnectError` when streaming,
`httpx.RemoteProtocolError` for a stream cut short. Through `httpx_aiohttp` the httpx type can
even mislead: a refused connection arrives as `httpx.ConnectTimeout` whose cause is aiohttp's
`ClientConnectorError`. So the cause chain is read first, the outer type last.
"""

from __future__ import annotations

import json
import socket
from typing import Literal

import aiohttp
import httpx
import ollama
import pydantic

from agent.errors import (
    BackendError,
    BackendResponseError,
    ContextOverflowError,
    ModelCapabilityError,
    ModelNotFoundError,
    StreamError,
)

TransportKind = Literal["unreachable", "dropped", "connect_timeout", "read_timeout"]

TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.RequestError,  # connect, read, write, protocol errors and timeouts, through httpx
    aiohttp.ClientError,  # what `httpx_aiohttp` passes through without mapping it
    ConnectionError,  # the client's own "Failed to connect to Ollama", and socket resets
)
"""What a broken or unreachable connection raises; `transport_kind` tells which it is."""

UNREADABLE_ERRORS: tuple[type[Exception], ...] = (json.JSONDecodeError, pydantic.ValidationError)
"""What an answer that is not Ollama's JSON raises inside the client."""

FOREIGN_ERRORS = TRANSPORT_ERRORS + UNREADABLE_ERRORS
"""Everything the backend translates besides `ollama.ResponseError`; the rest propagates."""


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


def response_error(
    exc: ollama.ResponseError, *, model: str, url: str, needed: int = 0, available: int = 0
) -> BackendError:
    """Translate an error status (or an in-band error line, status -1) into the project's errors."""
    message = str(exc.error)
    status = exc.status_code
    lowered = message.lower()
    if status == -1:
        return StreamError(
            f"Ollama reported an error in the middle of the stream for {model}: {message}. "
            "This usually means the model runner crashed or ran out of memory; check "
            "`ollama ps` and the server log, then try again."
        )
    if status == 404 and "not found" in lowered:
        return ModelNotFoundError(model, url)
    if status == 400 and "does not support" in lowered:
        return ModelCapabilityError(
            f"{message}. Use a model that can do this (for tool use: llama3.1, llama3.2 or "
            "llama3.3 from the Ollama library)."
        )
    if status == 400 and "context length" in lowered:
        return ContextOverflowError(needed=needed, available=available, model=model)
    return BackendResponseError(
        f"Ollama at {url} answered {status} for {model}: {message}", status_code=status
    )


def unreadable(exc: BaseException, *, model: str, url: str) -> StreamError | None:
    """A stream line that is not JSON, or not shaped like Ollama's."""
    if isinstance(exc, json.JSONDecodeError):
        return StreamError(
            f"the stream from {url} for {model} contained a line that is not JSON ({exc.msg}). "
            "Is OLLAMA_HOST pointing at Ollama, and not at a proxy or another service?"
        )
    if isinstance(exc, pydantic.ValidationError):
        return StreamError(
            f"the stream from {url} for {model} contained a line Ollama would not send: {exc}"
        )
    return None
