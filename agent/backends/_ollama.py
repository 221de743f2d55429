"""`OllamaBackend`: raw Llama 3 prompts through the official `ollama.AsyncClient`.

Transport: the client runs on `httpx_aiohttp.AiohttpTransport` with a sized aiohttp connection
pool, because httpx's default pool does work proportional to its open connections on every
request and collapses under hundreds of concurrent runs (DESIGN decision 9; see
`bench/bench_client.py`).

Retries and their limits:

* 503 (Ollama's queue is full): the request is sent again after an exponential, jittered wait,
  `Retries.busy_attempts` times in all, then `OllamaBusyError`.
* A stream that breaks off (reset, incomplete chunked body, closed before the final line) is
  retried `Retries.dropped_streams` times, then `StreamError`. A raw request is safe to repeat:
  * before any text reached the caller, the same request is sent again;
  * after text reached the caller, the request is sent again with that text appended to the
    prompt, so the model *continues* it (raw mode makes this exact: the model sees the same
    tokens it had generated, most of them from its cache). The caller's stream carries on
    seamlessly, never repeating or contradicting text it has already seen; `Done.warnings` says
    that it was resumed. With the `llama-server` engine (Ollama ≥ 0.30) a control token such as
    `<|python_tag|>` arrives as empty text and so cannot be replayed; the continuation is still
    a valid sample given the visible text.
* Nothing else is retried: an error line inside the stream, an unreadable line, a timeout, a
  refused connection, a missing model are reported at once, translated into `agent.errors`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import ollama
from httpx_aiohttp import AiohttpTransport

from agent.backends._base import Backend, Done, GenerateEvent, GenerateOptions, ModelInfo, TextChunk
from agent.backends._config import PullProgress, Retries, Timeouts, parse_host
from agent.backends._context import PromptHistory, size_context
from agent.backends._modelinfo import check_capabilities, describe, wire_options
from agent.backends._pull import stream_pull
from agent.backends._stream import Dropped, Final, StreamAttempt
from agent.backends._translate import (
    response_error,
    transport_kind,
    unreachable_reason,
    unreadable,
)
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ModelCapabilityError,
    ModelNotFoundError,
    OllamaBusyError,
    OllamaUnreachableError,
    StreamError,
)
from agent.llama3 import BEGIN_OF_TEXT, count_tokens, tokenizer_is_exact

logger = logging.getLogger("agent.backends.ollama")


class OllamaBackend(Backend):
    """Ollama in raw mode: streams the completion of a native Llama 3 prompt.

    ```python
    async with OllamaBackend() as backend:  # OLLAMA_HOST, else http://127.0.0.1:11434
        async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
            ...  # TextChunk(text=...) events, then one Done(done_reason, usage, warnings)
    ```

    `host`: as the `ollama` client reads it (None → `OLLAMA_HOST` → `http://127.0.0.1:11434`).
    `max_connections`: the size of the connection pool. `concurrency`: at most this many
    requests in flight to this server; the rest wait here, before any deadline starts (set it
    to the server's `OLLAMA_NUM_PARALLEL` × loaded models to keep Ollama's own queue short).
    `pull_missing`: pull a model that is not there instead of failing (progress goes to
    `on_pull_progress` and the log). `completion_reserve`: the room for the answer when the
    caller sets no `num_predict`. `transport`: an httpx transport to use instead (tests).

    After each answer `prompt_eval_count` is compared with the tokens sent; a gap that neither
    this backend's recent prompts (Ollama's prompt cache) nor the context the server reports in
    `/api/ps` explains becomes a warning in `Done.warnings` and in the log: the prompt was
    probably truncated.

    Break out of `generate` early only through `contextlib.aclosing(...)` (or let the task be
    cancelled): that is what closes the HTTP stream, which makes Ollama stop generating.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        timeouts: Timeouts | None = None,
        max_connections: int = 512,
        concurrency: int | None = None,
        retries: Retries | None = None,
        pull_missing: bool = False,
        on_pull_progress: Any = None,
        completion_reserve: int = 2048,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = parse_host(host or os.environ.get("OLLAMA_HOST"))
        self.timeouts = timeouts or Timeouts()
        self.retries = retries or Retries()
        self.pull_missing = pull_missing
        self.completion_reserve = completion_reserve
        self._on_pull_progress = on_pull_progress
        self._rng = rng or random.Random()
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self._client = ollama.AsyncClient(
            self.url,
            transport=transport or AiohttpTransport(limits=limits),
            # Reads are bounded per line by `StreamAttempt`; here only connect and write.
            timeout=httpx.Timeout(
                connect=self.timeouts.connect,
                read=None,
                write=self.timeouts.between_chunks,
                pool=None,
            ),
        )
        self._gate = anyio.Semaphore(concurrency) if concurrency else None
        self._info: dict[str, ModelInfo] = {}
        self._info_locks: dict[str, anyio.Lock] = {}
        self._num_ctx: dict[str, int] = {}
        self._loaded: dict[tuple[str, int], int | None] = {}
        self._version: str | None = None
        self._history = PromptHistory(count_tokens)

    async def __aenter__(self) -> OllamaBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]

    # --- small calls ---------------------------------------------------------------------------

    async def _small(self, what: str, model: str, call: Any) -> Any:
        try:
            with anyio.fail_after(self.timeouts.request):
                return await call
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"Ollama at {self.url} did not answer {what} within {self.timeouts.request} s. "
                "Is the server overloaded? Raise Timeouts.request if it is just slow."
            ) from exc
        except ollama.ResponseError as exc:
            raise response_error(exc, model=model, url=self.url) from exc
        except Exception as exc:
            raise self._translate_other(exc, model=model, what=what) from exc

    def _translate_other(self, exc: BaseException, *, model: str, what: str) -> BackendError:
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
            response = await self._small(
                "GET /api/version",
                "",
                self._client._request_raw("GET", "/api/version"),  # type: ignore[no-untyped-call]
            )
            self._version = str(response.json().get("version", ""))
        return self._version

    async def model_info(self, model: str) -> ModelInfo:
        """Context length, family, capabilities and server version of `model`, asked once."""
        if model in self._info:
            return self._info[model]
        lock = self._info_locks.setdefault(model, anyio.Lock())
        async with lock:
            if model in self._info:
                return self._info[model]
            try:
                show = await self._small("POST /api/show", model, self._client.show(model))
            except ModelNotFoundError:
                if not self.pull_missing:
                    raise
                await self._pull_logged(model)
                show = await self._small("POST /api/show", model, self._client.show(model))
            info = describe(
                model,
                model_info=show.modelinfo or {},
                capabilities=tuple(show.capabilities or ()),
                server_version=await self.version(),
            )
            self._info[model] = info
            return info

    async def ensure_model(self, model: str, *, tools: bool = False) -> ModelInfo:
        """`model_info`, raising `ModelCapabilityError` if the model cannot do what is needed.

        A server older than 0.6.4 reports no capabilities; then nothing is checked.
        """
        info = await self.model_info(model)
        check_capabilities(info, tools=tools)
        return info
        if "completion" not in info.capabilities:
            raise ModelCapabilityError(
                f"model '{model}' cannot generate text (capabilities: "
                f"{', '.join(info.capabilities)}). Use a chat model such as llama3.1."
            )
        if tools and not info.supports_tools:
            raise ModelCapabilityError(
                f"model '{model}' does not support tools according to Ollama (its template has "
                "no tool support). Use llama3.1, llama3.2 or llama3.3 from the Ollama library "
                "(`ollama pull llama3.1`)."
            )
        return info

    def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Pull `model`, yielding Ollama's progress lines; ends after `status == "success"`."""
        return stream_pull(
            self._client,
            model=model,
            url=self.url,
            between_chunks=self.timeouts.between_chunks,
            translate_other=self._translate_other,
        )

    async def _pull_logged(self, model: str) -> None:
        logger.info("pulling %s from %s", model, self.url)
        last = ""
        async for progress in self.pull(model):
            if self._on_pull_progress is not None:
                self._on_pull_progress(progress)
            if progress.status != last:
                logger.info("pull %s: %s", model, progress.status)
                last = progress.status

    async def _loaded_context(self, model: str, num_ctx: int) -> int | None:
        """The context the server runs `model` with (`/api/ps`, Ollama ≥ 0.10), if it says.

        Asked once per model and requested `num_ctx`: the answer only changes with a reload.
        """
        key = (model, num_ctx)
        if key not in self._loaded:
            self._loaded[key] = await self._ask_loaded_context(model)
        return self._loaded[key]

    async def _ask_loaded_context(self, model: str) -> int | None:
        try:
            loaded = await self._small("GET /api/ps", model, self._client.ps())
        except BackendError:
            return None
        wanted = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        for entry in loaded.models:
            if (entry.model or entry.name or "").lower() == wanted.lower():
                context: int | None = entry.context_length
                return context
        return None

    # --- generate ------------------------------------------------------------------------------

    async def generate(
        self, prompt: str, *, model: str, options: GenerateOptions
    ) -> AsyncIterator[GenerateEvent]:
        """Stream the completion of the native `prompt` (which starts with `<|begin_of_text|>`)."""
        info = await self.model_info(model)
        # Ollama adds the BOS itself; sending its text too would give the model two (§1.5).
        text = prompt.removeprefix(BEGIN_OF_TEXT)
        sent = 1 + count_tokens(text)
        ceiling = min(info.context_length, options.num_ctx_max or info.context_length)
        num_ctx, num_predict = size_context(
            model=model,
            prompt_tokens=sent,
            num_predict=options.num_predict,
            reserve=self.completion_reserve,
            ceiling=ceiling,
            current=self._num_ctx.get(model, 0),
        )
        self._num_ctx[model] = num_ctx
        gate = self._gate
        if gate is not None:
            await gate.acquire()
        try:
            async for event in self._generate(text, model, options, sent, num_ctx, num_predict):
                yield event
        finally:
            if gate is not None:
                gate.release()

    async def _generate(
        self,
        text: str,
        model: str,
        options: GenerateOptions,
        sent: int,
        num_ctx: int,
        num_predict: int,
    ) -> AsyncIterator[GenerateEvent]:
        deadline = anyio.current_time() + (self.timeouts.total or float("inf"))
        emitted: list[str] = []
        warnings: list[str] = []
        busy = drops = 0
        while True:
            continuation = "".join(emitted)
            resumed_chunks = len(emitted)
            # What the server may have cached before this attempt; then this prompt, which it
            # caches as soon as it evaluates it (concurrent runs share a prefix that way).
            history = self._history.snapshot(model)
            self._history.remember(model, text + continuation)
            left = num_predict - len(emitted)
            if emitted and left <= 0:
                yield Done(done_reason="length", warnings=tuple(warnings))
                return
            attempt = StreamAttempt(
                self._client,
                url=self.url,
                model=model,
                prompt=text + continuation,
                options=wire_options(options, num_ctx=num_ctx, num_predict=left),
                keep_alive=options.keep_alive,
                timeouts=self.timeouts,
                deadline=deadline,
                sent=sent,
                num_ctx=num_ctx,
                translate_other=self._translate_other,
            )
            try:
                async with contextlib.aclosing(attempt.events()) as events:
                    async for event in events:
                        if isinstance(event, TextChunk):
                            emitted.append(event.text)
                            yield event
                            continue
                        yield await self._finish(
                            event,
                            model,
                            text,
                            continuation,
                            sent,
                            warnings,
                            resumed_chunks,
                            history,
                        )
                        return
            except ollama.ResponseError as exc:
                if exc.status_code == 404:
                    self._info.pop(model, None)  # deleted since it was described
                if exc.status_code != 503:
                    raise response_error(
                        exc, model=model, url=self.url, needed=sent, available=num_ctx
                    ) from exc
                busy += 1
                if busy >= self.retries.busy_attempts:
                    raise OllamaBusyError(
                        f"Ollama at {self.url} is busy ({exc.error}) and stayed busy over "
                        f"{busy} attempts. Lower the number of concurrent runs (the backend's "
                        "`concurrency`), or raise OLLAMA_MAX_QUEUE / OLLAMA_NUM_PARALLEL."
                    ) from exc
                wait = self.retries.backoff(busy, self._rng)
                logger.info("Ollama busy (503); retry %d in %.2f s", busy, wait)
                await anyio.sleep(wait)
            except Dropped as exc:
                # What was generated before the break sits in the server's cache all the same.
                self._history.remember(model, text + "".join(emitted))
                drops += 1
                if drops > self.retries.dropped_streams:
                    raise StreamError(
                        f"the stream from Ollama at {self.url} for {model} broke off {drops} "
                        f"times ({exc.detail}). Check the server (`ollama ps`, its log) and any "
                        "proxy between it and this program."
                    ) from exc
                if emitted:
                    note = (
                        f"the stream broke off after {len(''.join(emitted))} characters "
                        f"({exc.detail}) and was resumed from there"
                    )
                    warnings.append(note)
                    logger.warning("%s: %s", model, note)
                else:
                    logger.info(
                        "%s: stream broke off before any text (%s); retrying", model, exc.detail
                    )

    async def _finish(
        self,
        final: Final,
        model: str,
        text: str,
        continuation: str,
        sent: int,
        warnings: list[str],
        resumed_chunks: int,
        history: tuple[str, ...],
    ) -> Done:
        done = final.done
        # One chunk is one token; the tokens of an interrupted attempt count as generated too.
        usage = dataclasses.replace(done.usage, eval_count=done.usage.eval_count + resumed_chunks)
        sent_now = sent if not continuation else 1 + count_tokens(text + continuation)
        warning = self._history.shortfall_warning(
            model=model,
            history=history,
            text=text + continuation,
            sent=sent_now,
            reported=usage.prompt_eval_count,
            num_ctx=usage.num_ctx,
            exact=tokenizer_is_exact(),
        )
        if warning is not None:
            loaded = await self._loaded_context(model, usage.num_ctx)
            if loaded is not None and loaded >= sent_now:
                # The server holds the whole prompt: the gap is a cache this process did not
                # fill (another client, or this program before a restart).
                logger.debug("%s: prompt cache from elsewhere, not a truncation", model)
            else:
                if loaded is not None:
                    warning += f" The server runs {model} with a context of {loaded} tokens."
                logger.warning("%s", warning)
                warnings.append(warning)
        completion = continuation + final.text
        self._history.remember(model, text + completion)
        return Done(done_reason=done.done_reason, usage=usage, warnings=(*warnings, *done.warnings))
