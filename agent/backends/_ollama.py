"""`OllamaBackend`: raw Llama 3 prompts to Ollama's `/api/generate`.

Transport: the per-token path is one HTTP stack, aiohttp with a sized connection pool, NDJSON
decoded by orjson (issue 13: the `ollama` client over httpx over `httpx_aiohttp` over aiohttp
cost five times the client CPU of a bare aiohttp loop). The official `ollama.AsyncClient`
(on httpx, no keep-alive: its calls are rare) stays for `show`, `ps` and `pull`. One pool per
event loop (`_wire.py`); the calls to Ollama's API and their error translation live in
`_ollama_api.py`, context sizing and prompt counting in `_context.py`. This module holds the
policy: retries, resumption, and the checks around them.

Retries and their limits:

* 503 (Ollama's queue is full): the request is sent again after an exponential, jittered wait,
  `Retries.busy_attempts` times in all, then `OllamaBusyError`; the waits count against
  `Timeouts.total`, and a wait that would end past it raises that timeout at once.
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
  Only transport failures, unreadable answers and `ollama.ResponseError` are translated; any
  other exception is a bug and propagates as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import ClassVar

import anyio
import httpx
import ollama

from agent.backends._base import (
    Backend,
    Done,
    GenerateEvent,
    GenerateOptions,
    ModelInfo,
    Retries,
    TextChunk,
    Timeouts,
    parse_host,
)
from agent.backends._context import (
    PromptHistory,
    Remembered,
    TokenCounter,
    check_capabilities,
    size_context,
)
from agent.backends._ollama_api import (
    Caps,
    Clients,
    Final,
    PullCallback,
    PullProgress,
    Server,
    StreamAttempt,
    response_error,
    timeout_error,
    wire_options,
)
from agent.backends._wire import READ_ERRORS, Connections, Dropped, LoopState, http_session
from agent.errors import OllamaBusyError, StreamError
from agent.llama3 import BEGIN_OF_TEXT, tokenizer_is_exact

logger = logging.getLogger("agent.backends.ollama")


class OllamaBackend(Backend):
    """Ollama in raw mode: streams the completion of a native Llama 3 prompt.

    ```python
    async with OllamaBackend() as backend:  # OLLAMA_HOST, else http://127.0.0.1:11434
        async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
            ...  # TextChunk(text=...) events, then one Done(done_reason, usage, warnings)
    ```

    `host`: as the `ollama` client reads it (None → `OLLAMA_HOST` → `http://127.0.0.1:11434`).
    `max_connections`: the size of the connection pool (per event loop), so the most requests
    on the wire at once; the rest wait here. The default, 512, is Ollama's default
    `OLLAMA_MAX_QUEUE`: Ollama admits `OLLAMA_NUM_PARALLEL` × models running plus that many
    waiting and answers 503 beyond, so a larger pool only turns a burst into 503s and retries.
    Measured (5-call runs, emulator in its own process, 200 ms + 5 tokens per call, ideal
    1.2 s, 2 shared cores): 200 runs took 3.0-3.2 s with 100 connections (the `httpx_aiohttp`
    default: runs queue for a connection), 1.60 s with 512 and 1.54-1.60 s with 1,000; 1,000
    runs are CPU-bound (7.6-16 s whatever the pool); 1,000 one-call runs against 64 slots and
    a queue of 512 took 9.0 s with 512 or 1,000 connections, but 1,000 drew 685 503s (each
    retried after a backoff) and 512 none. Raise it with `OLLAMA_MAX_QUEUE`.

    `concurrency`: at most this many requests in flight to this server; the rest wait here,
    before any deadline starts (set it to the server's `OLLAMA_NUM_PARALLEL` × loaded models
    to keep Ollama's own queue short). `pull_missing`: pull a model that is not there instead
    of failing (progress goes to `on_pull_progress` and the log). `completion_reserve`: the
    room for the answer when the caller sets no `num_predict`. `keepalive_expiry`: seconds
    after which an idle connection is closed. `max_line_bytes`, `max_completion_chars`: what
    one NDJSON line and one completion may hold; a longer line is a `StreamError`, a longer
    completion ends as `length` (as does one that runs past `num_predict`, whatever the server
    does). `transport`: an httpx transport for the `ollama` client's calls (`show`, `ps`,
    `pull`; tests); it is shared by every event loop. Generating always uses aiohttp.

    One backend can serve several `anyio.run` calls in turn (a script that runs an agent
    twice): each event loop gets its own connection pool, closed when that loop ends or by
    `aclose()`, whichever comes first.

    Prompt tokens are counted incrementally (`TokenCounter`): a step of a conversation only
    tokenizes what was added since the step before, and long new text is counted in a worker
    thread, so counting never stalls the other runs on the event loop.

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
        on_pull_progress: PullCallback | None = None,
        completion_reserve: int = 2048,
        keepalive_expiry: float = 30.0,
        max_line_bytes: int = Caps.line_bytes,
        max_completion_chars: int = Caps.completion_chars,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = parse_host(host or os.environ.get("OLLAMA_HOST"))
        self.timeouts = timeouts or Timeouts()
        self.retries = retries or Retries()
        self.completion_reserve = completion_reserve
        self._rng = rng or random.Random()
        self._caps = Caps(line_bytes=max_line_bytes, completion_chars=max_completion_chars)

        def make_clients() -> Clients:
            session = http_session(
                connect=self.timeouts.connect,
                max_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
            )
            management = ollama.AsyncClient(
                self.url,
                transport=transport,
                timeout=httpx.Timeout(
                    connect=self.timeouts.connect,
                    read=None,  # `Timeouts.request`, and per line while pulling
                    write=self.timeouts.between_chunks,
                    pool=None,
                ),
                limits=httpx.Limits(max_keepalive_connections=0),  # rare calls: none left idle
            )
            return Clients(session=session, ollama=management, owns_transport=transport is None)

        self._connections = Connections(make_clients, concurrency=concurrency)
        self._server = Server(
            self.url,
            timeouts=self.timeouts,
            connections=self._connections,
            pull_missing=pull_missing,
            on_pull_progress=on_pull_progress,
        )
        self._num_ctx: dict[str, int] = {}
        self.token_counter = TokenCounter()
        self._history = PromptHistory(self._count)

    async def __aenter__(self) -> OllamaBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._connections.aclose()

    async def version(self) -> str:
        """The server's version (`GET /api/version`), asked once."""
        return await self._server.version()

    async def model_info(self, model: str) -> ModelInfo:
        """Context length, family, capabilities and server version of `model`, asked once."""
        return await self._server.model_info(model)

    async def ensure_model(self, model: str, *, tools: bool = False) -> ModelInfo:
        """`model_info`, raising `ModelCapabilityError` if the model cannot do what is needed.

        A server older than 0.6.4 reports no capabilities; then nothing is checked.
        """
        info = await self.model_info(model)
        check_capabilities(info, tools=tools)
        return info

    def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Pull `model`, yielding Ollama's progress lines; ends after `status == "success"`."""
        return self._server.pull(model)

    async def _count(self, text: str, state: LoopState[Clients] | None = None) -> int:
        state = state or await self._connections.current()
        counter = self.token_counter
        if not counter.warm:
            # The first count loads the tokenizer in a thread; runs that start meanwhile wait
            # for it here rather than each taking a thread of its own.
            async with state.warm_up:
                await counter.warm_up(limiter=state.limiter)
        return await counter.count(text, limiter=state.limiter)

    def _size(
        self, model: str, info: ModelInfo, options: GenerateOptions, sent: int
    ) -> tuple[int, int]:
        """`num_ctx` and `num_predict` for a prompt of `sent` tokens (policy: `_context.py`)."""
        ceiling = min(info.context_length, options.num_ctx or info.context_length)
        current = self._num_ctx.get(model, 0)
        sizes = size_context(
            model=model,
            prompt_tokens=sent,
            num_predict=options.num_predict,
            reserve=self.completion_reserve,
            ceiling=ceiling,
            current=current,
            fixed=options.num_ctx is not None,
        )
        # Per model and only growing, so runs sharing the model agree (a change reloads it).
        self._num_ctx[model] = max(current, sizes[0])
        return sizes

    # --- generate ------------------------------------------------------------------------------

    takes_deadline: ClassVar[bool] = True
    takes_chunked: ClassVar[bool] = True

    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        options: GenerateOptions,
        deadline: float | None = None,
        chunked: bool = True,
    ) -> AsyncIterator[GenerateEvent]:
        """Stream the completion of the native `prompt` (which starts with `<|begin_of_text|>`).

        `deadline`: an `anyio.current_time()` by which the stream ends (`BackendTimeoutError`),
        as `Timeouts.total` does; the earlier of the two holds. `chunked=False`: the text in one
        `TextChunk` before `Done` (`Backend.takes_chunked`).
        """
        # One async generator between the socket and the caller, this one: every layer costs
        # every read, so the loop of attempts and the reading of each live here, not in three.
        info = await self.model_info(model)
        state = await self._connections.current()
        # Ollama adds the BOS itself; sending its text too would give the model two (§1.5).
        text = prompt.removeprefix(BEGIN_OF_TEXT)
        sent = 1 + await self._count(text, state)
        num_ctx, num_predict = self._size(model, info, options, sent)
        gate = state.gate
        if gate is not None:
            await gate.acquire()
        done: Done | None = None
        try:
            total = anyio.current_time() + (self.timeouts.total or float("inf"))
            deadline = total if deadline is None else min(total, deadline)
            emitted: list[str] = []  # the text the caller has, in the chunks it came in
            tokens = 0  # the tokens that text holds (a chunk may hold several: `StreamAttempt`)
            warnings: list[str] = []
            busy = drops = 0
            while done is None:
                continuation = "".join(emitted)
                resumed_chunks = tokens
                # What the server may have cached before this attempt; then this prompt, which
                # it caches as soon as it evaluates it (concurrent runs share a prefix that way).
                history = self._history.snapshot(model)
                self._history.remember(model, text + continuation, tokens=sent - 1)
                left = num_predict - tokens
                if tokens and left <= 0:
                    done = Done(done_reason="length", warnings=tuple(warnings))
                    break
                attempt = StreamAttempt(
                    state.client.session,
                    url=self.url,
                    model=model,
                    prompt=text + continuation,
                    options=wire_options(options, num_ctx=num_ctx, num_predict=left),
                    keep_alive=options.keep_alive,
                    timeouts=self.timeouts,
                    deadline=deadline,
                    sent=sent,
                    num_ctx=num_ctx,
                    caps=self._caps,
                    translate_other=self._server.translate_other,
                    note=f", with Ollama busy (503) {busy} times" if busy else "",
                )
                try:
                    lines = await attempt.open()
                    while not attempt.ended:
                        try:
                            batch = await lines.batch()
                        except READ_ERRORS as exc:
                            raise attempt.read_error(exc)  # noqa: B904 - its cause is set
                        piece = attempt.take(batch)
                        if attempt.ended:  # the connection is free before the last text goes
                            await attempt.release()
                        if piece:
                            emitted.append(piece)
                            if chunked:
                                yield TextChunk(text=piece)
                    final = attempt.end()
                    done = await self._finish(
                        final, model, text, continuation, sent, warnings, resumed_chunks, history
                    )
                except ollama.ResponseError as exc:
                    if exc.status_code == 404:
                        self._server.info.pop(model, None)  # deleted since it was described
                    if exc.status_code != 503:
                        raise response_error(
                            exc, model=model, url=self.url, needed=sent, available=num_ctx
                        ) from exc
                    busy += 1
                    await self._wait_while_busy(exc, model, busy, deadline)
                except Dropped as exc:
                    tokens = resumed_chunks + attempt.chunks
                    # What was generated before the break sits in the server's cache all the same.
                    self._history.remember(model, text + "".join(emitted), tokens=sent - 1)
                    drops += 1
                    self._after_drop(exc, model, drops, emitted, warnings)
                finally:
                    attempt.close()
        finally:
            if gate is not None:
                gate.release()
        # Last, outside every block: the connection and the gate are free before the caller
        # sees the end, and closing this generator here has nothing left to unwind.
        if not chunked and emitted:
            yield TextChunk(text="".join(emitted))
        yield done

    def _after_drop(
        self, exc: Dropped, model: str, drops: int, emitted: list[str], warnings: list[str]
    ) -> None:
        """Raise when the stream broke off too often, else note the resumption."""
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
            logger.info("%s: stream broke off before any text (%s); retrying", model, exc.detail)

    async def _wait_while_busy(
        self, exc: ollama.ResponseError, model: str, busy: int, deadline: float
    ) -> None:
        """Back off after the `busy`-th 503, within `Timeouts.total`, or raise."""
        if busy >= self.retries.busy_attempts:
            raise OllamaBusyError(
                f"Ollama at {self.url} is busy ({exc.error}) and stayed busy over "
                f"{busy} attempts. Lower the number of concurrent runs (the backend's "
                "`concurrency`), or raise OLLAMA_MAX_QUEUE / OLLAMA_NUM_PARALLEL."
            ) from exc
        wait = self.retries.backoff(busy, self._rng)
        if wait >= deadline - anyio.current_time():
            # The retry would start after the deadline: say so now rather than sleep till then.
            raise timeout_error(
                "total",
                url=self.url,
                model=model,
                timeouts=self.timeouts,
                note=f", with Ollama busy (503) {busy} times",
            ) from exc
        logger.info("Ollama busy (503); retry %d in %.2f s", busy, wait)
        await anyio.sleep(wait)

    async def _finish(
        self,
        final: Final,
        model: str,
        text: str,
        continuation: str,
        sent: int,
        warnings: list[str],
        resumed_chunks: int,
        history: tuple[Remembered, ...],
    ) -> Done:
        done = final.done
        usage = done.usage
        if resumed_chunks:
            # One chunk is one token; the tokens of an interrupted attempt count as generated.
            usage = dataclasses.replace(usage, eval_count=usage.eval_count + resumed_chunks)
        sent_now = sent if not continuation else 1 + await self._count(text + continuation)
        # An attempt the client cut short has no final line, so no count to compare.
        warning = (
            None
            if final.cut
            else await self._history.shortfall_warning(
                model=model,
                history=history,
                text=text + continuation,
                sent=sent_now,
                reported=usage.prompt_eval_count,
                num_ctx=usage.num_ctx,
                exact=tokenizer_is_exact(),
            )
        )
        if warning is not None:
            loaded = await self._server.loaded_context(model, usage.num_ctx)
            if loaded is not None and loaded >= sent_now:
                # The server holds the whole prompt: the gap is a cache this process did not
                # fill (another client, or this program before a restart).
                logger.debug("%s: prompt cache from elsewhere, not a truncation", model)
            else:
                if loaded is not None:
                    warning += f" The server runs {model} with a context of {loaded} tokens."
                logger.warning("%s", warning)
                warnings.append(warning)
        # What the server now holds, and a lower bound of its tokens without counting them:
        # the prompt's, plus what it generated (`eval_count` includes the end token, which is
        # not cached; a token is rarely less than a character, so the text's length bounds it).
        generated = min(max(done.usage.eval_count - 1, 0), len(final.text))
        self._history.remember(
            model, text + continuation + final.text, tokens=sent_now - 1 + generated
        )
        return Done(done_reason=done.done_reason, usage=usage, warnings=(*warnings, *done.warnings))
