"""`VLLMBackend`: raw Llama 3 prompts to vLLM's OpenAI-compatible `/v1/completions`.

The same native prompts, parser and loop as with Ollama; what differs is vLLM's (the wire and
its errors are in `_vllm_api.py`, the sources in docs/engines.md (vLLM)):

* **One BOS.** The rendered prompt keeps its `<|begin_of_text|>` and goes out with
  `add_special_tokens: false`; vLLM would otherwise add a second.
* **The text keeps `<|python_tag|>`** (`skip_special_tokens: false`), and the end token comes
  back as `stop_reason` (128008 `<|eom_id|>`, None for the model's own `<|eot_id|>`): the
  backend appends it to the text, so the loop's parser reads eom and eot exactly and the next
  prompt holds exactly what the model wrote.
* **The context is the server's** (`max_model_len` from `/v1/models`): no `num_ctx` is sent,
  a prompt is counted with vLLM's own `/tokenize` (one call per step; the local `TokenCounter`
  when the server has no `/tokenize`), and `max_tokens` is always explicit (vLLM's default is
  16): `num_predict`, else the room left, at most `completion_reserve`. A prompt that does not
  fit is `ContextOverflowError` before anything is sent; the server's own context 400 is the
  same error.

Retries, as for Ollama: 503 and 429 (a proxy or router in front of vLLM, or a server that is
shutting down) are sent again after a jittered backoff, `Retries.busy_attempts` times within
`Timeouts.total`, then `ServerBusyError`; a stream that breaks off is resumed from the text
already sent (`Retries.dropped_streams`); nothing else is retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import anyio
import orjson

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
from agent.backends._vllm_api import (
    JSON,
    Caps,
    ErrorStatus,
    Final,
    SSEAttempt,
    completion_body,
    context_error,
    error_message,
    is_context_overflow,
    overflow,
    timeout_error,
    translate_transport,
    unauthorized,
)
from agent.backends._wire import TRANSPORT_ERRORS, Connections, Dropped, LoopState, http_session
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import BEGIN_OF_TEXT

logger = logging.getLogger("agent.backends.vllm")


# --- the small calls ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServedModel:
    """One entry of `/v1/models`."""

    name: str
    root: str
    max_model_len: int | None


class Server:
    """The small calls: `/v1/models`, `/tokenize`, `/version`, each within `Timeouts.request`."""

    def __init__(
        self,
        url: str,
        *,
        timeouts: Timeouts,
        connections: Connections[aiohttp.ClientSession],
        key_given: bool,
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        self.connections = connections
        self.key_given = key_given
        self._version: str | None = None

    def status_error(self, status: int, message: str, *, model: str, what: str) -> BackendError:
        """An error status as the project's error (the context 400 and the 404 are the
        backend's: they need its numbers and the list of models)."""
        if status == 401:
            return unauthorized(self.url, key_given=self.key_given)
        return BackendResponseError(
            f"vLLM at {self.url} answered {status} to {what} for {model or 'the server'}: "
            f"{message}",
            status_code=status,
        )

    async def json(self, method: str, path: str, *, payload: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON body) within `Timeouts.request`; an error status comes with its
        message as the body."""
        what = f"{method} {path}"
        session = (await self.connections.current()).client
        data = None if payload is None else orjson.dumps(payload)
        try:
            with anyio.fail_after(self.timeouts.request):
                async with session.request(
                    method, self.url + path, data=data, headers=JSON if data else None
                ) as response:
                    body = await response.read()
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"vLLM at {self.url} did not answer {what} within {self.timeouts.request} s. "
                "Is the server overloaded? Raise Timeouts.request if it is just slow."
            ) from exc
        except TRANSPORT_ERRORS as exc:
            raise translate_transport(exc, url=self.url, timeouts=self.timeouts, what=what) from exc
        if response.status != 200:
            return response.status, error_message(body)
        try:
            return 200, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BackendResponseError(
                f"unexpected answer from vLLM at {self.url} to {what}: "
                f"{body[:200].decode(errors='replace')!r}. Is the host a vLLM server?"
            ) from None

    async def models(self) -> list[ServedModel]:
        """What `/v1/models` lists: the served names (with `--served-model-name`, each name),
        their `max_model_len` (vLLM ≥ 0.5; LoRA adapters have none) and `root` (the path)."""
        status, body = await self.json("GET", "/v1/models")
        if status != 200:
            raise self.status_error(status, str(body), model="", what="GET /v1/models")
        entries = body.get("data") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise BackendResponseError(
                f"unexpected answer from vLLM at {self.url} to GET /v1/models: {body!r:.200}"
            )
        served: list[ServedModel] = []
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                length = entry.get("max_model_len")
                served.append(
                    ServedModel(
                        name=entry["id"],
                        root=str(entry.get("root") or entry["id"]),
                        max_model_len=length if type(length) is int and length > 0 else None,
                    )
                )
        return served

    def not_found(self, model: str, served: list[ServedModel]) -> ModelNotFoundError:
        names = ", ".join(m.name for m in served) or "none"
        return ModelNotFoundError(
            model,
            self.url,
            advice=f"The server serves: {names}. Use one of those names, or start vLLM with "
            f"this model: `vllm serve <hugging face id> --served-model-name {model}` (e.g. "
            "`vllm serve meta-llama/Llama-3.1-8B-Instruct`).",
        )

    async def tokenize(self, model: str, prompt: str) -> tuple[int, int] | None:
        """(tokens, max_model_len) of `prompt` as vLLM tokenizes it (no special tokens added),
        or None when the server has no `/tokenize` (a proxy may hide it)."""
        payload = {"model": model, "prompt": prompt, "add_special_tokens": False}
        status, body = await self.json("POST", "/tokenize", payload=payload)
        if status == 404 and "does not exist" in str(body):
            raise ErrorStatus(status, str(body))  # the model is not (or no longer) served
        if status in (404, 405, 501):
            return None
        if status != 200:
            raise self.status_error(status, str(body), model=model, what="POST /tokenize")
        count = body.get("count") if isinstance(body, dict) else None
        if type(count) is not int:
            raise BackendResponseError(
                f"unexpected answer from vLLM at {self.url} to POST /tokenize: {body!r:.200}"
            )
        length = body.get("max_model_len")
        return count, length if type(length) is int else 0

    async def version(self) -> str:
        """The server's version (`GET /version`), asked once."""
        if self._version is None:
            status, body = await self.json("GET", "/version")
            if status == 404:  # a proxy that passes only /v1 and /tokenize: not worth failing
                self._version = ""
                return ""
            if status != 200 or not isinstance(body, dict):
                raise self.status_error(status, str(body), model="", what="GET /version")
            self._version = str(body.get("version", ""))
        return self._version


class VLLMBackend(Backend):
    """A vLLM server (`vllm serve`): streams the completion of a native Llama 3 prompt.

    ```python
    async with VLLMBackend("gpu-box:8000") as backend:
        async for event in backend.generate(
            prompt, model="meta-llama/Llama-3.1-70B-Instruct", options=GenerateOptions()
        ):
            ...  # TextChunk(text=...) events, then one Done(done_reason, usage, warnings)
    ```

    `host`: `host`, `host:port`, `http(s)://host[:port][/path]` (default port 8000; an OpenAI
    base URL ending in `/v1` is taken as the server's root). `model` is the served name (the
    Hugging Face id, or `--served-model-name`). `api_key`: sent as `Authorization: Bearer` (the
    server's `--api-key`); None reads `VLLM_API_KEY`, as vLLM itself does. `concurrency`: at
    most this many requests in flight (the rest wait here, before any deadline starts).
    `max_connections`, `completion_reserve`, `keepalive_expiry`, `max_line_bytes`,
    `max_completion_chars`, `timeouts`, `retries`: as for `OllamaBackend`.

    `Usage`: `prompt_eval_count` is the prompt tokens vLLM evaluated (`prompt_tokens` less
    `cached_tokens`, which vLLM reports when started with `--enable-prompt-tokens-details`),
    `eval_count` its `completion_tokens`, `num_ctx` its `max_model_len`; vLLM reports no
    durations. Break out of `generate` early only through `contextlib.aclosing(...)` (or let the
    task be cancelled): closing the stream is what makes vLLM abort the request.
    """

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
        url = parse_host(host, default_port=8000, server="vLLM")
        self.url = url.removesuffix("/v1")  # the routes are /v1/... and /tokenize, /version
        self.timeouts = timeouts or Timeouts()
        self.retries = retries or Retries()
        self.completion_reserve = completion_reserve
        self._rng = rng or random.Random()
        self._caps = Caps(line_bytes=max_line_bytes, completion_chars=max_completion_chars)
        key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY") or None

        def make_session() -> aiohttp.ClientSession:
            return http_session(
                connect=self.timeouts.connect,
                max_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
                api_key=key,
            )

        self._connections = Connections(make_session, concurrency=concurrency)
        self._server = Server(
            self.url, timeouts=self.timeouts, connections=self._connections, key_given=bool(key)
        )
        self._info: dict[str, ModelInfo] = {}
        self._tokenize = True  # False once the server turned out to have no /tokenize
        self.token_counter = TokenCounter()

    async def __aenter__(self) -> VLLMBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._connections.aclose()

    async def version(self) -> str:
        """vLLM's version (`GET /version`), asked once."""
        return await self._server.version()

    async def model_info(self, model: str) -> ModelInfo:
        """The served model's context (`max_model_len`), family and vLLM's version, asked once.

        The family comes from the served name or, failing that, the path it was loaded from
        (`root`), so `--served-model-name llama` still reads as Llama 3.1 when it was loaded
        from `meta-llama/Llama-3.1-8B-Instruct`. vLLM reports no capabilities: a Llama 3.x is
        given `completion` and `tools` (its native format is what this runtime speaks), any
        other model none, so nothing is checked.
        """
        if model in self._info:
            return self._info[model]
        state = await self._connections.current()
        async with state.locks.setdefault(model, anyio.Lock()):
            if model in self._info:
                return self._info[model]
            served = await self._server.models()
            entry = next((m for m in served if m.name == model), None)
            if entry is None:
                raise self._server.not_found(model, served)
            length = entry.max_model_len
            if length is None:  # an old server, or a LoRA adapter: /tokenize says it too
                counted = await self._server.tokenize(model, "")
                length = counted[1] if counted is not None and counted[1] > 0 else 2048
            fam = family(model, {"general.name": entry.root})
            info = ModelInfo(
                name=model,
                context_length=length,
                family=fam,
                capabilities=("completion", "tools") if fam != "unknown" else (),
                server_version=await self.version(),
            )
            self._info[model] = info
            return info

    async def ensure_model(self, model: str, *, tools: bool = False) -> ModelInfo:
        """`model_info`, raising `ModelCapabilityError` if the model cannot do what is needed."""
        info = await self.model_info(model)
        check_capabilities(info, tools=tools)
        return info

    async def count(self, model: str, prompt: str) -> int:
        """Tokens of `prompt` as vLLM sees it with no special tokens added (its BOS included)."""
        if self._tokenize:
            try:
                counted = await self._server.tokenize(model, prompt)
            except ErrorStatus as exc:  # 404: the server now serves another model
                raise await self._not_served(model) from exc
            if counted is not None:
                return counted[0]
            logger.info("vLLM at %s has no /tokenize: counting prompts locally", self.url)
            self._tokenize = False
        state = await self._connections.current()
        return await self._count_locally(prompt, state)

    async def _count_locally(self, text: str, state: LoopState[aiohttp.ClientSession]) -> int:
        counter = self.token_counter
        if not counter.warm:
            async with state.warm_up:
                await counter.warm_up(limiter=state.limiter)
        return await counter.count(text, limiter=state.limiter)

    def _max_tokens(self, model: str, info: ModelInfo, options: GenerateOptions, sent: int) -> int:
        """`max_tokens` for a prompt of `sent` tokens, or `ContextOverflowError`."""
        context = info.context_length
        wanted = options.num_predict if options.num_predict and options.num_predict > 0 else None
        needed = sent + (wanted or MIN_COMPLETION)
        if needed > context:
            raise overflow(needed=needed, available=context, model=model, prompt_tokens=sent)
        return wanted or min(self.completion_reserve, context - sent)

    # --- generate ------------------------------------------------------------------------------

    takes_deadline: ClassVar[bool] = True

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
        # vLLM is told to add no special token, so the prompt carries its one BOS as text.
        text = prompt if prompt.startswith(BEGIN_OF_TEXT) else BEGIN_OF_TEXT + prompt
        sent = await self.count(model, text)
        max_tokens = self._max_tokens(model, info, options, sent)
        gate = state.gate
        if gate is not None:
            await gate.acquire()
        try:
            total = anyio.current_time() + (self.timeouts.total or float("inf"))
            deadline = total if deadline is None else min(total, deadline)
            emitted: list[str] = []
            warnings: list[str] = []
            busy = drops = 0
            while True:
                continuation = "".join(emitted)
                resumed_chunks = len(emitted)
                left = max_tokens - resumed_chunks
                if emitted and left <= 0:
                    yield Done(done_reason="length", warnings=tuple(warnings))
                    return
                sent_now = sent if not emitted else await self.count(model, text + continuation)
                attempt = SSEAttempt(
                    state.client,
                    url=self.url,
                    model=model,
                    body=completion_body(
                        model=model, prompt=text + continuation, options=options, max_tokens=left
                    ),
                    timeouts=self.timeouts,
                    deadline=deadline,
                    sent=sent_now,
                    context=info.context_length,
                    caps=self._caps,
                    note=f", with vLLM busy ({busy} times)" if busy else "",
                )
                try:
                    async with contextlib.aclosing(attempt.events()) as events:
                        async for event in events:
                            if isinstance(event, TextChunk):
                                emitted.append(event.text)
                                yield event
                                continue
                            if event.end:
                                yield TextChunk(text=event.end)
                            yield self._finish(event, resumed_chunks, warnings)
                            return
                except ErrorStatus as exc:
                    if exc.status == 404 and "does not exist" in exc.message:
                        raise await self._not_served(model) from exc
                    if exc.status not in (429, 503):
                        raise self._status_error(
                            exc, model=model, sent=sent_now, max_tokens=left, info=info
                        ) from exc
                    busy += 1
                    await self._wait_while_busy(exc, model, busy, deadline)
                except Dropped as exc:
                    drops += 1
                    self._after_drop(exc, model, drops, emitted, warnings)
        finally:
            if gate is not None:
                gate.release()

    async def _not_served(self, model: str) -> Exception:
        """`ModelNotFoundError` for a model the server stopped serving (restarted with another)."""
        self._info.pop(model, None)
        return self._server.not_found(model, await self._server.models())

    def _finish(self, final: Final, resumed_chunks: int, warnings: list[str]) -> Done:
        done = final.done
        usage = done.usage
        if resumed_chunks:
            # One chunk is (at least) one token; an interrupted attempt's tokens were generated.
            usage = dataclasses.replace(usage, eval_count=usage.eval_count + resumed_chunks)
        return Done(done_reason=done.done_reason, usage=usage, warnings=(*warnings, *done.warnings))

    def _status_error(
        self, exc: ErrorStatus, *, model: str, sent: int, max_tokens: int, info: ModelInfo
    ) -> Exception:
        if exc.status == 400 and is_context_overflow(exc.message):
            return context_error(
                exc.message,
                model=model,
                sent=sent,
                max_tokens=max_tokens,
                context=info.context_length,
            )
        return self._server.status_error(
            exc.status, exc.message, model=model, what="POST /v1/completions"
        )

    def _after_drop(
        self, exc: Dropped, model: str, drops: int, emitted: list[str], warnings: list[str]
    ) -> None:
        """Raise when the stream broke off too often, else note the resumption."""
        if drops > self.retries.dropped_streams:
            raise StreamError(
                f"the stream from vLLM at {self.url} for {model} broke off {drops} times "
                f"({exc.detail}). Check the server (its log) and any proxy between it and this "
                "program."
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
        self, exc: ErrorStatus, model: str, busy: int, deadline: float
    ) -> None:
        """Back off after the `busy`-th 503 or 429, within the deadline, or raise."""
        if busy >= self.retries.busy_attempts:
            raise ServerBusyError(
                f"vLLM at {self.url} answered {exc.status} ({exc.message}) over {busy} attempts. "
                "Lower the number of concurrent runs (the backend's `concurrency`), or check the "
                "server and whatever proxy stands in front of it."
            ) from exc
        wait = self.retries.backoff(busy, self._rng)
        if wait >= deadline - anyio.current_time():
            raise timeout_error(
                "total",
                url=self.url,
                model=model,
                timeouts=self.timeouts,
                note=f", with vLLM busy ({busy} times)",
            ) from exc
        logger.info("vLLM busy (%d); retry %d in %.2f s", exc.status, busy, wait)
        await anyio.sleep(wait)
