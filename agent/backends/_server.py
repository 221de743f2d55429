"""The small calls of the Ollama backend (`/api/version`, `/api/show`, `/api/ps`, `/api/pull`),
and the translation of transport failures into the project's errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import ollama

from agent.backends._base import ModelInfo
from agent.backends._config import PullProgress, Timeouts
from agent.backends._connection import Connections
from agent.backends._modelinfo import describe
from agent.backends._pull import stream_pull
from agent.backends._translate import (
    FOREIGN_ERRORS,
    response_error,
    transport_kind,
    unreachable_reason,
    unreadable,
)
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ModelNotFoundError,
    OllamaUnreachableError,
    StreamError,
)

logger = logging.getLogger("agent.backends.ollama")

T = TypeVar("T")
PullCallback = Callable[[PullProgress], None]


class Server:
    """One Ollama server as the backend sees it: its version, its models, what it has loaded.

    Answers that cannot change while the server runs are asked once and kept.
    """

    def __init__(
        self,
        url: str,
        *,
        timeouts: Timeouts,
        connections: Connections,
        pull_missing: bool,
        on_pull_progress: PullCallback | None,
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        self.connections = connections
        self.pull_missing = pull_missing
        self.on_pull_progress = on_pull_progress
        self.info: dict[str, ModelInfo] = {}
        self._loaded: dict[tuple[str, int], int | None] = {}
        self._version: str | None = None

    async def small(
        self, what: str, model: str, call: Callable[[ollama.AsyncClient], Awaitable[T]]
    ) -> T:
        """`call(client)` within `Timeouts.request`, its failures translated."""
        client = (await self.connections.current()).client
        try:
            with anyio.fail_after(self.timeouts.request):
                return await call(client)
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"Ollama at {self.url} did not answer {what} within {self.timeouts.request} s. "
                "Is the server overloaded? Raise Timeouts.request if it is just slow."
            ) from exc
        except ollama.ResponseError as exc:
            raise response_error(exc, model=model, url=self.url) from exc
        except FOREIGN_ERRORS as exc:
            raise self.translate_other(exc, model=model, what=what) from exc

    def translate_other(self, exc: BaseException, *, model: str, what: str) -> BackendError:
        """A transport failure, or an answer that is not Ollama's JSON, as the project's error."""
        kind = transport_kind(exc)
        if kind == "unreachable":
            return OllamaUnreachableError(self.url, unreachable_reason(exc))
        if kind == "connect_timeout":
            return BackendTimeoutError(
                f"connecting to Ollama at {self.url} took longer than {self.timeouts.connect} s. "
                "Check the host and the network, or raise Timeouts.connect."
            )
        if kind is not None:
            return StreamError(
                f"the connection to Ollama at {self.url} broke during {what} ({exc}). "
                "Check that the server is still running (`ollama ps`)."
            )
        streamed = what in ("generate", "pull")
        if streamed and (garbled := unreadable(exc, model=model, url=self.url)) is not None:
            return garbled
        return BackendResponseError(f"unexpected answer from Ollama at {self.url} to {what}: {exc}")

    async def version(self) -> str:
        """The server's version (`GET /api/version`), asked once."""
        if self._version is None:
            # The client has no version() method (PROTOCOL.md §4): use its request helper, so
            # errors come out of the same path as every other call.
            async def ask(client: ollama.AsyncClient) -> Any:
                response: httpx.Response = await client._request_raw("GET", "/api/version")  # type: ignore[no-untyped-call]
                return response.json()

            answer = await self.small("GET /api/version", "", ask)
            if not isinstance(answer, dict):
                raise BackendResponseError(
                    f"unexpected answer from Ollama at {self.url} to GET /api/version: {answer!r}"
                )
            self._version = str(answer.get("version", ""))
        return self._version

    async def model_info(self, model: str) -> ModelInfo:
        """Context length, family, capabilities and server version of `model`, asked once."""
        if model in self.info:
            return self.info[model]
        state = await self.connections.current()
        lock = state.locks.setdefault(model, anyio.Lock())
        async with lock:
            if model in self.info:
                return self.info[model]
            try:
                show = await self.small("POST /api/show", model, lambda c: c.show(model))
            except ModelNotFoundError:
                if not self.pull_missing:
                    raise
                await self._pull_logged(model)
                show = await self.small("POST /api/show", model, lambda c: c.show(model))
            info = describe(
                model,
                model_info=show.modelinfo or {},
                capabilities=tuple(show.capabilities or ()),
                server_version=await self.version(),
            )
            self.info[model] = info
            return info

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Pull `model`, yielding Ollama's progress lines; ends after `status == "success"`."""
        client = (await self.connections.current()).client
        stream = stream_pull(
            client,
            model=model,
            url=self.url,
            between_chunks=self.timeouts.between_chunks,
            translate_other=self.translate_other,
        )
        async with contextlib.aclosing(stream):
            async for progress in stream:
                yield progress

    async def _pull_logged(self, model: str) -> None:
        logger.info("pulling %s from %s", model, self.url)
        last = ""
        async for progress in self.pull(model):
            if self.on_pull_progress is not None:
                self.on_pull_progress(progress)
            if progress.status != last:
                logger.info("pull %s: %s", model, progress.status)
                last = progress.status

    async def loaded_context(self, model: str, num_ctx: int) -> int | None:
        """The context the server runs `model` with (`/api/ps`, Ollama ≥ 0.10), if it says.

        Asked once per model and requested `num_ctx`: the answer only changes with a reload.
        """
        key = (model, num_ctx)
        if key not in self._loaded:
            self._loaded[key] = await self._ask_loaded_context(model)
        return self._loaded[key]

    async def _ask_loaded_context(self, model: str) -> int | None:
        try:
            loaded = await self.small("GET /api/ps", model, lambda c: c.ps())
        except BackendError:
            return None
        wanted = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        for entry in loaded.models:
            if (entry.model or entry.name or "").lower() == wanted.lower():
                context: int | None = entry.context_length
                return context
        return None
