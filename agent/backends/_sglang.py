"""`SGLangBackend`: raw Llama 3 prompts to SGLang's native `/generate`.

SGLang serves one model per server (several servers behind one backend are a pool). The
prompt goes out as `text` without its `<|begin_of_text|>` (SGLang's tokenizer adds the BOS
itself, so sending it would give the model two), with `skip_special_tokens: false` (else
`<|python_tag|>` vanishes from the text) and an explicit `max_new_tokens` (SGLang's default is
128). The stop token is trimmed from the text by SGLang and reported as
`meta_info.finish_reason.matched`; the backend streams `<|eom_id|>` or `<|eot_id|>` as the last
chunk, so the loop knows which ended the turn and the next prompt repeats the completion
exactly as the model generated it (all of it a hit in SGLang's radix cache).

Sizing: the context is the server's (`--context-length`, else the model's); nothing is sent to
resize it. Each prompt is counted once, exactly with SGLang's `/tokenize` when the server has
it, else with `TokenCounter`; a prompt that does not fit is a `ContextOverflowError` before
anything is sent. The answer gets `num_predict` tokens, or what is left of the context up to
`completion_reserve`.

Retries and their limits (as `OllamaBackend`'s): a full server (503 or 429, or an abort with
status 503 before any text) is retried `Retries.busy_attempts` times with backoff within
`Timeouts.total`, then `ServerBusyError`; a stream that breaks off is sent again
`Retries.dropped_streams` times: before any text the same request, after text the prompt plus
that text, so the model continues it (the stream carries on seamlessly; `Done.warnings` says so).
Nothing else is retried. The wire details are in `_sglang_api.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio

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
from agent.backends._context import MIN_COMPLETION, TokenCounter, check_capabilities, family
from agent.backends._sglang_api import (
    Api,
    Busy,
    Caps,
    Clients,
    Final,
    StatusError,
    StreamAttempt,
    request_body,
    status_error,
    timeout_error,
)
from agent.backends._wire import Connections, Dropped, LoopState, http_session
from agent.errors import (
    BackendResponseError,
    ContextOverflowError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import BEGIN_OF_TEXT, tokenizer_is_exact

logger = logging.getLogger("agent.backends.sglang")


class SGLangBackend(Backend):
    """SGLang's native API: streams the completion of a native Llama 3 prompt.

    ```python
    async with SGLangBackend("gpu-host:30000") as backend:
        async for event in backend.generate(prompt, model=name, options=GenerateOptions()):
            ...  # TextChunk(text=...) events, then one Done(done_reason, usage, warnings)
    ```

    `host`: the server (default `http://127.0.0.1:30000`, SGLang's port). `model`: the name the
    server serves (`--served-model-name`, else its `--model-path`); either is accepted.
    `api_key`: the server's `--api-key`, sent as a bearer token (None: none; no environment
    variable is read). `concurrency`: at most this many requests in flight to this server (the
    rest wait here, before any deadline starts). `max_connections`: the connection pool per
    event loop. `completion_reserve`: the most tokens an answer gets when `num_predict` is
    unset. `max_line_bytes`, `max_completion_chars`: what one event line and one completion
    may hold; a longer line is a `StreamError`, a longer completion ends as `length` (as does
    one that runs past `max_new_tokens`, whatever the server does).

    Break out of `generate` early only through `contextlib.aclosing(...)` (or let the task be
    cancelled): that closes the HTTP stream, which makes SGLang abort the request.
    """

    takes_deadline: ClassVar[bool] = True

    def __init__(
        self,
        host: str | None = None,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        retries: Retries | None = None,
        concurrency: int | None = None,
        max_connections: int = 512,
        completion_reserve: int = 2048,
        keepalive_expiry: float = 30.0,
        max_line_bytes: int = Caps.line_bytes,
        max_completion_chars: int = Caps.completion_chars,
        rng: random.Random | None = None,
    ) -> None:
        self.url = parse_host(host, default_port=30000, server="SGLang")
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
                api_key=api_key,
            )
            return Clients(session=session)

        self._connections = Connections(make_clients, concurrency=concurrency)
        self._api = Api(self.url, timeouts=self.timeouts, connections=self._connections)
        self._info: dict[str, ModelInfo] = {}
        self._served = ""  # the name the server gives its model (what /tokenize is told)
        self.token_counter = TokenCounter()

    async def __aenter__(self) -> SGLangBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._connections.aclose()

    async def version(self) -> str:
        """SGLang's version (`GET /server_info`), asked once."""
        return str((await self._api.server_info()).get("version") or "")

    # --- the model ----------------------------------------------------------------------------

    async def model_info(self, model: str) -> ModelInfo:
        """Context length, family, capabilities and version of the served model, asked once.

        Raises `ModelNotFoundError` when `model` is not the model the server serves.
        """
        if model in self._info:
            return self._info[model]
        state = await self._connections.current()
        async with state.locks.setdefault(model, anyio.Lock()):
            if model not in self._info:
                self._info[model] = await self._describe(model)
            return self._info[model]

    async def ensure_model(self, model: str, *, tools: bool = False) -> ModelInfo:
        """`model_info`, raising `ModelCapabilityError` if the model cannot do what is needed."""
        info = await self.model_info(model)
        check_capabilities(info, tools=tools)
        return info

    async def _describe(self, model: str) -> ModelInfo:
        server = await self._api.server_info()
        try:
            listed = await self._api.get("/v1/models")
            about = await self._api.get("/model_info", "/get_model_info")
        except StatusError as exc:
            what = "GET /v1/models and /model_info"
            raise status_error(exc, url=self.url, what=what) from exc
        cards = listed.get("data") if isinstance(listed, dict) else None
        card = cards[0] if isinstance(cards, list) and cards and isinstance(cards[0], dict) else {}
        about = about if isinstance(about, dict) else {}
        served = str(card.get("id") or server.get("served_model_name") or "")
        path = str(about.get("model_path") or server.get("model_path") or served)
        if model.lower() not in {served.lower(), path.lower()}:
            raise ModelNotFoundError(
                model,
                self.url,
                advice=(
                    f"That SGLang server serves '{served or path}' (model path '{path}'), one "
                    f"model per server: use --model '{served or path}', or start a server for "
                    f"this one (python -m sglang.launch_server --model-path {model} --port 30000) "
                    "and point --host at it."
                ),
            )
        self._served = served or path
        context = self._context_length(card, server)
        found = family(model, {"general.name": path, "general.basename": served})
        # SGLang reports no capabilities: a Llama 3.x completes and calls tools natively; of
        # another model nothing is claimed (an empty tuple is not checked).
        capabilities: tuple[str, ...] = ("completion", "tools") if found != "unknown" else ()
        if about.get("is_generation") is False:
            capabilities = ("embedding",)  # `--is-embedding`: it cannot generate
        return ModelInfo(
            name=model,
            context_length=context,
            family=found,
            capabilities=capabilities,
            server_version=str(server.get("version") or ""),
        )

    def _context_length(self, card: dict[str, Any], server: dict[str, Any]) -> int:
        """The longest sequence the server takes: the model's context (`/v1/models`
        `max_model_len`, or `--context-length`), or less when its KV pool is smaller (then the
        scheduler's `max_req_input_len` + 1 bounds a request)."""
        candidates = [
            value
            for value in (card.get("max_model_len"), server.get("context_length"))
            if type(value) is int and value > 0
        ]
        pool = server.get("max_req_input_len")
        if type(pool) is int and pool > 0:
            candidates = [min(c, pool + 1) for c in candidates] or [pool + 1]
        if not candidates:
            raise BackendResponseError(
                f"SGLang at {self.url} does not say its context length (no max_model_len in "
                "/v1/models, no context_length or max_req_input_len in /server_info). Start "
                "it with --context-length, or upgrade it."
            )
        return candidates[0]

    # --- counting and sizing --------------------------------------------------------------------

    async def count_prompt(self, text: str) -> tuple[int, bool]:
        """Tokens of the prompt `text` (without its BOS) as the server sees it, BOS included,
        and whether the count is exact."""
        if self._api.has_tokenize is not False and self._served:
            count = await self._api.tokenize(text, model=self._served)
            if count is not None:
                return count, True
        state = await self._connections.current()
        return 1 + await self._count_locally(text, state), tokenizer_is_exact()

    async def _count_locally(self, text: str, state: LoopState[Clients]) -> int:
        counter = self.token_counter
        if not counter.warm:
            # The first count loads the tokenizer in a thread; runs that start meanwhile wait
            # for it here rather than each taking a thread of its own.
            async with state.warm_up:
                await counter.warm_up(limiter=state.limiter)
        return await counter.count(text, limiter=state.limiter)

    def _max_new_tokens(self, model: str, context: int, options: GenerateOptions, sent: int) -> int:
        """`max_new_tokens` for a prompt of `sent` tokens; `ContextOverflowError` if it does not
        fit with room for an answer (SGLang refuses input + max_new_tokens > its context)."""
        wanted = options.num_predict if options.num_predict and options.num_predict > 0 else None
        needed = sent + (wanted or MIN_COMPLETION)
        if needed > context:
            raise ContextOverflowError(
                needed=needed, available=context, model=model, prompt_tokens=sent
            )
        return wanted or min(context - sent, self.completion_reserve)

    # --- generate -----------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        options: GenerateOptions,
        deadline: float | None = None,
    ) -> AsyncIterator[GenerateEvent]:
        """Stream the completion of the native `prompt` (which starts with `<|begin_of_text|>`).

        `deadline`: an `anyio.current_time()` by which the stream ends (`BackendTimeoutError`),
        as `Timeouts.total` does; the earlier of the two holds.
        """
        info = await self.model_info(model)
        state = await self._connections.current()
        text = prompt.removeprefix(BEGIN_OF_TEXT)  # SGLang's tokenizer adds the BOS
        sent, exact = await self.count_prompt(text)
        max_new = self._max_new_tokens(model, info.context_length, options, sent)
        gate = state.gate
        if gate is not None:
            await gate.acquire()
        try:
            total = anyio.current_time() + (self.timeouts.total or float("inf"))
            deadline = total if deadline is None else min(total, deadline)
            emitted: list[str] = []
            warnings: list[str] = []
            generated = busy = drops = 0  # tokens of broken attempts; retries so far
            sent_now, left = sent, max_new
            while True:
                if emitted:
                    # A resumption: the prompt now ends with what was generated before the break.
                    sent_now, exact = await self.count_prompt(text + "".join(emitted))
                    left = min(max_new - generated, info.context_length - sent_now)
                    if left <= 0:
                        yield Done(done_reason="length", warnings=tuple(warnings))
                        return
                attempt = StreamAttempt(
                    state.client.session,
                    url=self.url,
                    model=model,
                    body=request_body(text + "".join(emitted), options, max_new_tokens=left),
                    timeouts=self.timeouts,
                    deadline=deadline,
                    sent=sent_now,
                    context_length=info.context_length,
                    caps=self._caps,
                    note=f", with SGLang busy {busy} times" if busy else "",
                )
                try:
                    async with contextlib.aclosing(attempt.events()) as events:
                        async for event in events:
                            if isinstance(event, TextChunk):
                                emitted.append(event.text)
                                yield event
                                continue
                            yield self._finish(
                                event,
                                model,
                                sent_now,
                                exact=exact,
                                generated=generated,
                                warnings=warnings,
                            )
                            return
                except StatusError as exc:
                    raise status_error(
                        exc, url=self.url, what=f"POST /generate for {model}"
                    ) from exc
                except Busy as exc:
                    busy += 1
                    await self._wait_while_busy(exc, model, busy, deadline)
                except Dropped as exc:
                    generated += attempt.tokens
                    drops += 1
                    self._after_drop(exc, model, drops, emitted, warnings)
        finally:
            if gate is not None:
                gate.release()

    def _finish(
        self,
        final: Final,
        model: str,
        sent: int,
        *,
        exact: bool,
        generated: int,
        warnings: list[str],
    ) -> Done:
        usage = final.done.usage
        if generated:
            usage = dataclasses.replace(usage, eval_count=usage.eval_count + generated)
        reported = final.prompt_tokens
        if exact and reported is not None and reported < sent:
            # SGLang never cuts a prompt unless it runs with --allow-auto-truncate: say so.
            note = (
                f"SGLang at {self.url} evaluated {reported} prompt tokens of the {sent} sent to "
                f"{model}: it truncated the prompt (is it running with --allow-auto-truncate?). "
                "Start it without that flag, so that a prompt that does not fit is an error."
            )
            logger.warning("%s", note)
            warnings.append(note)
        return Done(
            done_reason=final.done.done_reason,
            usage=usage,
            warnings=(*warnings, *final.done.warnings),
        )

    def _after_drop(
        self, exc: Dropped, model: str, drops: int, emitted: list[str], warnings: list[str]
    ) -> None:
        """Raise when the stream broke off too often, else note the resumption."""
        if drops > self.retries.dropped_streams:
            raise StreamError(
                f"the stream from SGLang at {self.url} for {model} broke off {drops} times "
                f"({exc.detail}). Check the server (its log) and any proxy between it and "
                "this program."
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

    async def _wait_while_busy(self, exc: Busy, model: str, busy: int, deadline: float) -> None:
        """Back off after the `busy`-th refusal, within `Timeouts.total`, or raise."""
        if busy >= self.retries.busy_attempts:
            raise ServerBusyError(
                f"SGLang at {self.url} is busy ({exc.message}) and stayed busy over {busy} "
                "attempts. Lower the number of concurrent runs (the backend's `concurrency`), "
                "or raise the server's --max-running-requests / --max-queued-requests."
            ) from exc
        wait = self.retries.backoff(busy, self._rng)
        if wait >= deadline - anyio.current_time():
            # The retry would start after the deadline: say so now rather than sleep till then.
            raise timeout_error(
                "total",
                url=self.url,
                model=model,
                timeouts=self.timeouts,
                note=f", with SGLang busy {busy} times",
            ) from exc
        logger.info("SGLang busy (%s); retry %d in %.2f s", exc.message, busy, wait)
        await anyio.sleep(wait)
