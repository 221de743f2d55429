"""`LlamaCppBackend`: raw Llama 3 prompts to llama.cpp's `llama-server` (native `/completion`).

The wire (the SSE stream, special tokens from their ids, errors) is `_llamacpp_api.py`; this
module holds the policy, as `_ollama.py` does for Ollama: sizing, retries, resumption.

* **One model.** llama-server serves the model it was started with, whatever `model` a request
  names. `model_info(model)` accepts the names it answers to in `/v1/models` (the `id`, which
  is `--alias` or the file's name, and each of `aliases`) and raises `ModelNotFoundError`
  (saying how to serve it) for any other: a config that names llama3.1 must not silently run
  whatever model the host has.
* **Sizing.** The context is the server's (`-c`, per slot: `/props`
  `default_generation_settings.n_ctx`); nothing is sent for it. The prompt is counted with the
  server's own `/tokenize` (one call per step) and `n_predict` is always explicit:
  `options.num_predict`, else what is left of the context, at most `completion_reserve`.
  A prompt that does not fit is a `ContextOverflowError` before anything is sent.
* **BOS.** llama-server tokenizes the prompt with `add_special` (its BOS) and parses special
  tokens in the text, so the prompt's `<|begin_of_text|>` text is stripped: one BOS.
* **Retries.** 503 (the model is loading; a proxy's queue is full) and 429 are sent again
  after `Retries` backoff within the deadline, then `ServerBusyError`. A stream that breaks off
  is resumed with the text already emitted appended to the prompt, as Ollama's is; special
  tokens are text there, which llama-server parses back into the same tokens, so the resumed
  prompt is exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from pathlib import PurePath
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
from agent.backends._context import check_capabilities, family, size_context
from agent.backends._llamacpp_api import (
    END_TOKENS,
    Attempt,
    Final,
    ServerAnswer,
    answer_error,
    request_body,
    timeout_error,
    transport_error,
)
from agent.backends._ollama_api import Caps
from agent.backends._wire import TRANSPORT_ERRORS, Connections, Dropped, LoopState, http_session
from agent.errors import (
    BackendResponseError,
    BackendTimeoutError,
    ModelNotFoundError,
    ServerBusyError,
    StreamError,
)
from agent.llama3 import BEGIN_OF_TEXT

logger = logging.getLogger("agent.backends.llamacpp")

DEFAULT_PORT = 8080
_RETRIED = frozenset({429, 503})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Served:
    """What `/props` and `/v1/models` say about the server and its one model."""

    names: tuple[str, ...]
    context_length: int
    model_path: str
    build_info: str


class LlamaCppBackend(Backend):
    """llama.cpp's `llama-server`: streams the completion of a native Llama 3 prompt.

    ```python
    async with LlamaCppBackend("127.0.0.1:8080") as backend:
        async for event in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
            ...  # TextChunk(text=...) events, then one Done(done_reason, usage, warnings)
    ```

    `host`: `host`, `host:port`, `:port` or a URL (default `http://127.0.0.1:8080`).
    `api_key`: sent as `Authorization: Bearer` (the server's `--api-key`); no environment
    variable is read. `concurrency`: at most this many requests in flight (set it to the
    server's slots, `-np`). The other arguments are `OllamaBackend`'s: `max_connections` (the
    pool per event loop), `completion_reserve` (room for the answer when no `num_predict` is
    set), `keepalive_expiry`, `max_line_bytes` (one SSE line), `max_completion_chars`, `rng`
    (backoff jitter).

    The model must be served with its special tokens marked as such (every Llama 3 GGUF is);
    `--special` is not needed: the text of `<|python_tag|>` and of the end tokens is put back
    from the token ids. The completion ends with `<|eom_id|>` or `<|eot_id|>` as the model wrote
    it, which is how the loop learns that a built-in tool call waits for its result.
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
        self.url = parse_host(host, default_port=DEFAULT_PORT, server="llama-server")
        self.timeouts = timeouts or Timeouts()
        self.retries = retries or Retries()
        self.completion_reserve = completion_reserve
        self._rng = rng or random.Random()
        self._caps = Caps(line_bytes=max_line_bytes, completion_chars=max_completion_chars)

        def make_session() -> aiohttp.ClientSession:
            return http_session(
                connect=self.timeouts.connect,
                max_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
                api_key=api_key,
            )

        self._connections: Connections[aiohttp.ClientSession] = Connections(
            make_session, concurrency=concurrency
        )
        self._served: Served | None = None
        self._info: dict[str, ModelInfo] = {}

    async def __aenter__(self) -> LlamaCppBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop."""
        await self._connections.aclose()

    # --- small calls ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One small JSON call within `Timeouts.request`, its failures translated; 503 and 429
        (the model is still loading) are retried like a generation's, within that time."""
        session = (await self._connections.current()).client
        what = f"{method} {path}"
        data = None if body is None else orjson.dumps(body)
        try:
            with anyio.fail_after(self.timeouts.request):
                busy = 0
                while True:
                    async with session.request(method, self.url + path, data=data) as response:
                        raw = await response.read()
                        status = response.status
                    busy += 1
                    if status not in _RETRIED or busy >= self.retries.busy_attempts:
                        break
                    await anyio.sleep(self.retries.backoff(busy, self._rng))
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"llama-server at {self.url} did not answer {what} within "
                f"{self.timeouts.request} s. Is it overloaded? Raise Timeouts.request if it is "
                "just slow."
            ) from exc
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, url=self.url, timeouts=self.timeouts, what=what) from exc
        if status != 200:
            error = ServerAnswer(status, raw)
            if status in _RETRIED:
                raise ServerBusyError(
                    f"llama-server at {self.url} answered {status} to {what} ({error.message}) "
                    f"{busy} times: it is still loading its model, or busy; try again shortly."
                )
            raise answer_error(error, model="", url=self.url)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BackendResponseError(
                f"unexpected answer from llama-server at {self.url} to {what}: {raw[:200]!r}. "
                "Is the host a llama.cpp llama-server?"
            ) from None

    async def _describe_server(self) -> Served:
        if self._served is not None:
            return self._served
        props = await self._call("GET", "/props")
        models = await self._call("GET", "/v1/models")
        try:
            n_ctx = props["default_generation_settings"]["n_ctx"]
            names: list[str] = []
            for entry in models["data"]:
                names += [entry["id"], *entry.get("aliases", ())]
            if type(n_ctx) is not int or n_ctx <= 0 or not all(type(n) is str for n in names):
                raise TypeError(n_ctx)
        except (KeyError, TypeError, IndexError):
            raise BackendResponseError(
                f"llama-server at {self.url} described itself in a way this backend does not "
                f"read (/props, /v1/models): {str(props)[:200]}. Is it a llama.cpp llama-server "
                "(a build from 2025 or later)?"
            ) from None
        self._served = Served(
            names=tuple(dict.fromkeys(names)),
            context_length=n_ctx,
            model_path=str(props.get("model_path", "")),
            build_info=str(props.get("build_info", "")),
        )
        return self._served

    async def version(self) -> str:
        """The server's build (`/props` `build_info`, such as `b6100-0c1e570`), asked once."""
        return (await self._describe_server()).build_info

    async def model_info(self, model: str) -> ModelInfo:
        """The served model as `model`: its context (`-c` per slot), family, capabilities."""
        info = self._info.get(model)
        if info is not None:
            return info
        served = await self._describe_server()
        if model not in served.names:
            error = ModelNotFoundError(model, self.url)
            error.args = (
                f"model '{model}' is not served by llama-server at {self.url}: it serves "
                f"{', '.join(served.names) or 'no model'} ({served.model_path}). Ask for that "
                f"name, or start llama-server with the model and `--alias {model}`.",
            )
            raise error
        stem = PurePath(served.model_path).stem
        info = ModelInfo(
            name=model,
            context_length=served.context_length,
            family=family(model, {"general.name": stem}),
            # Native prompts carry their tools: any Llama 3.x completes them (llama-server's own
            # "tools" capability is about its chat template, which is not used).
            capabilities=("completion", "tools"),
            server_version=served.build_info,
        )
        self._info[model] = info
        return info

    async def ensure_model(self, model: str, *, tools: bool = False) -> ModelInfo:
        """`model_info`, raising `ModelCapabilityError` if the model cannot do what is needed."""
        info = await self.model_info(model)
        check_capabilities(info, tools=tools)
        return info

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the server sends it to the model (`/tokenize`, with its BOS)."""
        answer = await self._call("POST", "/tokenize", {"content": text, "add_special": True})
        tokens = answer.get("tokens") if type(answer) is dict else None
        if type(tokens) is not list:
            raise BackendResponseError(
                f"unexpected answer from llama-server at {self.url} to POST /tokenize: "
                f"{str(answer)[:200]}"
            )
        return len(tokens)

    # --- generate ------------------------------------------------------------------------------

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
        state: LoopState[aiohttp.ClientSession] = await self._connections.current()
        # llama-server adds its BOS itself; the text too would give the model two.
        text = prompt.removeprefix(BEGIN_OF_TEXT)
        sent = await self.count_tokens(text)
        _, room = size_context(
            model=model,
            prompt_tokens=sent,
            num_predict=options.num_predict,
            reserve=self.completion_reserve,
            ceiling=info.context_length,
            current=info.context_length,
            fixed=True,
        )
        n_predict = room if options.num_predict else min(room, self.completion_reserve)
        gate = state.gate
        if gate is not None:
            await gate.acquire()
        try:
            total = anyio.current_time() + (self.timeouts.total or float("inf"))
            deadline = total if deadline is None else min(total, deadline)
            emitted: list[str] = []
            generated = 0  # tokens of earlier, broken attempts
            warnings: list[str] = []
            busy = drops = 0
            while True:
                continuation = "".join(emitted)
                if continuation.endswith(tuple(END_TOKENS)):
                    # The model had ended when the stream broke: nothing is left to generate.
                    yield Done(done_reason="stop", warnings=tuple(warnings))
                    return
                left = n_predict - generated
                if emitted and left <= 0:
                    yield Done(done_reason="length", warnings=tuple(warnings))
                    return
                attempt = Attempt(
                    state.client,
                    url=self.url,
                    model=model,
                    body=request_body(
                        model=model, prompt=text + continuation, options=options, n_predict=left
                    ),
                    timeouts=self.timeouts,
                    deadline=deadline,
                    sent=sent,
                    num_ctx=info.context_length,
                    caps=self._caps,
                    note=f", with llama-server busy (503) {busy} times" if busy else "",
                )
                try:
                    async with contextlib.aclosing(attempt.events()) as events:
                        async for event in events:
                            if isinstance(event, TextChunk):
                                emitted.append(event.text)
                                yield event
                                continue
                            yield self._finish(event, generated, warnings)
                            return
                except ServerAnswer as exc:
                    if exc.status not in _RETRIED:
                        raise answer_error(exc, model=model, url=self.url) from exc
                    busy += 1
                    await self._wait_while_busy(exc, model, busy, deadline)
                except Dropped as exc:
                    generated += attempt.tokens
                    drops += 1
                    self._after_drop(exc, model, drops, emitted, warnings)
        finally:
            if gate is not None:
                gate.release()

    def _finish(self, final: Final, generated: int, warnings: list[str]) -> Done:
        done = final.done
        usage = done.usage
        if generated:
            usage = dataclasses.replace(usage, eval_count=usage.eval_count + generated)
        return Done(done_reason=done.done_reason, usage=usage, warnings=(*warnings, *done.warnings))

    def _after_drop(
        self, exc: Dropped, model: str, drops: int, emitted: list[str], warnings: list[str]
    ) -> None:
        """Raise when the stream broke off too often, else note the resumption."""
        if drops > self.retries.dropped_streams:
            raise StreamError(
                f"the stream from llama-server at {self.url} for {model} broke off {drops} "
                f"times ({exc.detail}). Check the server (its log) and any proxy between it "
                "and this program."
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
        self, exc: ServerAnswer, model: str, busy: int, deadline: float
    ) -> None:
        """Back off after the `busy`-th 503 or 429, within the deadline, or raise."""
        if busy >= self.retries.busy_attempts:
            raise ServerBusyError(
                f"llama-server at {self.url} is busy ({exc.status}: {exc.message}) and stayed "
                f"busy over {busy} attempts. Lower the number of concurrent runs (the backend's "
                "`concurrency`), or give the server more slots (-np)."
            ) from exc
        wait = self.retries.backoff(busy, self._rng)
        if wait >= deadline - anyio.current_time():
            raise timeout_error(
                "total",
                url=self.url,
                model=model,
                timeouts=self.timeouts,
                note=f", with llama-server busy ({exc.status}) {busy} times",
            ) from exc
        logger.info("llama-server busy (%d); retry %d in %.2f s", exc.status, busy, wait)
        await anyio.sleep(wait)
