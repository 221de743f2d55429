"""`VLLMEmulator`: a real HTTP server on 127.0.0.1 that speaks vLLM's OpenAI-compatible protocol.

The endpoints `VLLMBackend` uses, as vLLM serves them (docs/engines.md (vLLM) has the sources):
`GET /v1/models` (the served names, `root`, `max_model_len`), `POST /v1/completions` (streamed as
server-sent events, or one JSON answer), `POST /tokenize`, `GET /version`, `GET /health`; with
`api_key`, the middleware's `401 {"error": "Unauthorized"}` on every `/v1` path (and only
there). The same scripts drive it as `OllamaEmulator` (`answer`, `call_tool`, ...): a script
writes what the model generates, end tokens included, and the emulator does what vLLM does:

* a BOS is added unless `add_special_tokens` is false (a prompt that carries its own
  `<|begin_of_text|>` then has two; `emu.requests[i].prompt`, and the script's
  `ScriptRequest.prompt`, are what the model saw, BOS included);
* `max_tokens` defaults to 16; a prompt that leaves no room is the context-length 400 (the
  current wording; the ≤ 0.9 wording and error shape with `version="0.9.2"`);
* generation stops at the tokenizer's eos (`<|eot_id|>`: `stop_reason` null), at the other ids
  of generation_config.json and the request's `stop_token_ids` (`stop_reason` the id), at a stop
  string (`stop_reason` the string), or at `max_tokens` (`finish_reason` "length"); the stop
  token's text is never sent, nor is a stop string;
* `<|python_tag|>` and the like are sent as empty text unless `skip_special_tokens` is false;
* with `stream_options.include_usage` a last event carries `usage` (and, with
  `enable_prompt_tokens_details`, the cached prompt tokens of a prefix cache kept per model in
  blocks of 16 tokens), then `data: [DONE]`.

Faults (`agent.testing._model`) hit `/v1/completions` (those with the default paths too):
`Busy` (503), `ServerError` (its status, vLLM's error shape), `DropConnection`, `Stall`,
`GarbageLine` (a `data:` line that is not JSON) and `ErrorLine` (vLLM's in-stream error event).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread

from agent.llama3 import BEGIN_OF_TEXT, SPECIAL_TOKENS, common_prefix_length
from agent.llama3 import count_tokens as llama_count_tokens
from agent.testing._completion import PromptCounter
from agent.testing._emulator import RecordedRequest, version_tuple
from agent.testing._http import HttpRequest, HttpServer, Responder
from agent.testing._model import (
    Busy,
    DropConnection,
    ErrorLine,
    Fault,
    FaultBook,
    GarbageLine,
    Script,
    ScriptRequest,
    ServerError,
    Stall,
    echo,
)
from agent.testing._response import SPECIAL_RE, continue_output, split_tokens

COMPLETIONS = "/v1/completions"
SPECIAL_IDS = {token: 128000 + i for i, token in enumerate(SPECIAL_TOKENS)}  # Llama 3's ids
EOS_TOKEN_ID = 128009  # the instruct tokenizer's eos_token
GENERATION_EOS = (128001, 128008, 128009)  # generation_config.json's eos_token_id
BLOCK = 16  # vLLM's default KV block size: the prefix cache holds whole blocks


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One streamed choice: its text, and the finish on the last one."""

    text: str
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VLLMGeneration:
    steps: tuple[Step, ...]
    completion_tokens: int
    generated: str  # the generated tokens as text, special ones included (the cache's view)

    @property
    def text(self) -> str:
        return "".join(step.text for step in self.steps)

    @property
    def finish(self) -> Step:
        return self.steps[-1]


def run_vllm_generation(
    output: str | Sequence[str],
    *,
    max_tokens: int,
    stop: Sequence[str],
    stop_token_ids: Iterable[int],
    skip_special_tokens: bool,
) -> VLLMGeneration:
    """vLLM's stop checks, in its order (`check_stop`): eos, stop ids, stop strings, length."""
    if isinstance(output, str):
        tokens = split_tokens(output)
    else:
        tokens = [t for piece in output for t in split_tokens(piece)]
    stop_ids = {*GENERATION_EOS, *stop_token_ids}
    steps: list[Step] = []
    generated: list[str] = []
    text = ""
    for token in tokens:
        generated.append(token)
        token_id = SPECIAL_IDS.get(token)
        if token_id is not None and token_id in stop_ids:
            reason = None if token_id == EOS_TOKEN_ID else token_id
            steps.append(Step(text="", finish_reason="stop", stop_reason=reason))
            break
        special = SPECIAL_RE.fullmatch(token) is not None
        piece = "" if special and skip_special_tokens else token
        found = [(at, s) for s in stop if s and (at := (text + piece).find(s)) >= 0]
        if found:
            at, string = min(found)
            steps.append(
                Step(text=(text + piece)[len(text) : at], finish_reason="stop", stop_reason=string)
            )
            break
        text += piece
        if len(generated) >= max_tokens:
            steps.append(Step(text=piece, finish_reason="length"))
            break
        steps.append(Step(text=piece))
    else:  # a script text with no end token ends as if the eos followed it
        generated.append("<|eot_id|>")
        steps.append(Step(text="", finish_reason="stop"))
    return VLLMGeneration(
        steps=tuple(steps), completion_tokens=len(generated), generated="".join(generated)
    )


class VLLMEmulator:
    """A vLLM server (`vllm serve`) for tests, examples and benchmarks, scripted by a function.

    ```python
    from agent.testing import VLLMEmulator, call_tool

    async with VLLMEmulator(call_tool("get_weather", {"city": "Paris"}, then="Sunny.")) as emu:
        backend = VLLMBackend(emu.url)  # model: emu.model
        ...
        assert emu.completions[-1].prompt.count("<|begin_of_text|>") == 1
    ```

    Knobs: `model` (the path it was loaded from, `root` in `/v1/models`), `served_model_names`
    (default: the model), `max_model_len`, `api_key` (the server's `--api-key`),
    `enable_prompt_tokens_details` (report cached prompt tokens), `version` (what `/version`
    says; below 0.10 the context error has the old wording and shape), `latency` (seconds before
    the first token), `token_rate` (tokens per second after it; None: as fast as possible),
    `faults`, `count_tokens` (Llama 3's by default), `port`, `raise_errors`, `max_records`
    (as for `OllamaEmulator`).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        model: str = "meta-llama/Llama-3.1-8B-Instruct",
        served_model_names: Sequence[str] | None = None,
        max_model_len: int = 131072,
        api_key: str | None = None,
        enable_prompt_tokens_details: bool = False,
        version: str = "0.11.0",
        latency: float = 0.0,
        token_rate: float | None = None,
        faults: Iterable[Fault] = (),
        count_tokens: Callable[[str], int] = llama_count_tokens,
        port: int = 0,
        raise_errors: bool = True,
        max_records: int | None = None,
    ) -> None:
        self.script: Script = script if script is not None else echo()
        self.root = model
        self.served_model_names = tuple(served_model_names or (model,))
        self.max_model_len = max_model_len
        self.api_key = api_key
        self.enable_prompt_tokens_details = enable_prompt_tokens_details
        self.version = version
        self.latency = latency
        self.token_rate = token_rate
        self._faults = FaultBook(tuple(faults))
        self.counter = PromptCounter(count_tokens)
        self._port = port
        self.raise_errors = raise_errors
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._recorded_total = 0
        self._server: HttpServer | None = None
        self._errors: list[Exception] = []
        self.cache = ""  # prompt + completion held in the prefix cache (one model per server)
        self._script_calls = 0
        self.created = int(time.time())

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> VLLMEmulator:
        self._server = HttpServer(self._dispatch, port=self._port)
        self._errors = self._server.errors
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.__aexit__(exc_type, exc, traceback)
            self._server = None
        if not self._errors or not self.raise_errors:
            return
        summary = f"the vLLM emulator failed inside {len(self._errors)} request handler(s)"
        if exc is not None:
            exc.add_note(f"{summary}: " + "; ".join(repr(e) for e in self._errors))
            return
        raise ExceptionGroup(summary, list(self._errors))

    @contextlib.contextmanager
    def start_in_thread(self) -> Iterator[VLLMEmulator]:
        """Run the emulator on an event loop in a background thread, for synchronous code."""
        with anyio.from_thread.start_blocking_portal() as portal:
            self.portal: anyio.from_thread.BlockingPortal = portal
            with portal.wrap_async_context_manager(self):
                yield self

    @property
    def port(self) -> int:
        assert self._server is not None, "the emulator is not running: use `async with`"
        return self._server.port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the backend's host."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        """The (first) served model name: what to pass as `model`."""
        return self.served_model_names[0]

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised inside the emulator's handlers (each closed its connection)."""
        return list(self._errors)

    async def refuse_connections(self) -> None:
        """Close the listening socket and every connection: clients get 'connection refused'."""
        assert self._server is not None
        await self._server.stop_listening()

    async def accept_connections(self) -> None:
        assert self._server is not None
        await self._server.listen()

    def inject(self, fault: Fault) -> None:
        """Add a fault; it hits the next `fault.times` completions."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return list(self._records)

    @property
    def completions(self) -> list[RecordedRequest]:
        return [r for r in self._records if r.path == COMPLETIONS]

    def _record(self, **fields: Any) -> int:
        self._records.append(RecordedRequest(**fields))
        self._recorded_total += 1
        return self._recorded_total - 1

    def _update(self, number: int, **changes: Any) -> None:
        position = number - (self._recorded_total - len(self._records))
        if position >= 0:
            self._records[position] = dataclasses.replace(self._records[position], **changes)

    # --- routing -------------------------------------------------------------------------------

    async def _dispatch(self, request: HttpRequest, responder: Responder) -> None:
        path = request.path.split("?", 1)[0]
        if self.api_key is not None and path.startswith("/v1") and not self._authorized(request):
            self._record(method=request.method, path=path, status=401, headers=request.headers)
            await responder.json(401, {"error": "Unauthorized"})
            return
        route = (request.method, path)
        if route == ("GET", "/health"):
            self._record(method=request.method, path=path)
            await responder.respond(200, "application/json", b"")
        elif route == ("GET", "/version"):
            self._record(method=request.method, path=path)
            await responder.json(200, {"version": self.version})
        elif route == ("GET", "/v1/models"):
            self._record(method=request.method, path=path, headers=request.headers)
            await responder.json(200, self._models())
        elif route == ("POST", "/tokenize"):
            await self._tokenize(request, responder)
        elif route == ("POST", COMPLETIONS):
            await self._completion(request, responder)
        else:
            self._record(method=request.method, path=path, status=404)
            await responder.json(404, {"detail": "Not Found"})

    def _authorized(self, request: HttpRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token == self.api_key

    def _models(self) -> dict[str, Any]:
        cards = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.root,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [
                    {"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission"}
                ],
            }
            for name in self.served_model_names
        ]
        return {"object": "list", "data": cards}

    def _error(self, status: int, message: str, kind: str, param: str = "") -> Any:
        """vLLM's `ErrorResponse`: nested under `error` since 0.10, flat before."""
        info = {"message": message, "type": kind, "param": param or None, "code": status}
        if version_tuple(self.version) < (0, 10):
            return {"object": "error", **info}
        return {"error": info}

    async def _reject(
        self,
        index: int,
        responder: Responder,
        status: int,
        message: str,
        kind: str,
        param: str = "",
    ) -> None:
        self._update(index, status=status, error=message, finished=True)
        await responder.json(status, self._error(status, message, kind, param))

    def _body(self, request: HttpRequest) -> dict[str, Any] | str:
        try:
            body = json.loads(request.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"JSON decode error: {exc}"
        return body if isinstance(body, dict) else "Input should be a valid dictionary"

    def _unknown_model(self, name: Any) -> str | None:
        if name is None or name in self.served_model_names:
            return None
        return f"The model `{name}` does not exist."

    async def _tokenize(self, request: HttpRequest, responder: Responder) -> None:
        body = self._body(request)
        index = self._record(method="POST", path="/tokenize", body=body, headers=request.headers)
        if isinstance(body, str) or not isinstance(body.get("prompt"), str):
            await self._reject(index, responder, 400, str(body), "Bad Request")
            return
        if (missing := self._unknown_model(body.get("model"))) is not None:
            await self._reject(index, responder, 404, missing, "NotFoundError", "model")
            return
        text = body["prompt"]
        if body.get("add_special_tokens", True):
            text = BEGIN_OF_TEXT + text
        count = self.counter.count(self.root, text).total
        self._update(
            index, model=body.get("model"), prompt=text, prompt_tokens=count, finished=True
        )
        # Stand-in ids (special tokens have their own): only `count` is what vLLM would say.
        ids = [SPECIAL_IDS.get(t, 1000 + len(t)) for t in split_tokens(text)][:count]
        tokens = ids + [0] * (count - len(ids))
        reply = {"count": count, "max_model_len": self.max_model_len, "tokens": tokens}
        await responder.json(200, {**reply, "token_strs": None})

    # --- completions ---------------------------------------------------------------------------

    async def _completion(self, request: HttpRequest, responder: Responder) -> None:
        started = time.time()
        body = self._body(request)
        index = self._record(
            method="POST", path=COMPLETIONS, body=body, headers=dict(request.headers)
        )
        if isinstance(body, str) or not isinstance(body.get("prompt"), str):
            await self._reject(index, responder, 400, str(body), "Bad Request")
            return
        name = body.get("model")
        stream = bool(body.get("stream"))
        self._update(index, model=name, stream=stream)
        if (missing := self._unknown_model(name)) is not None:
            await self._reject(index, responder, 404, missing, "NotFoundError", "model")
            return
        fault = self._faults.take(COMPLETIONS) or self._faults.take("/api/generate")
        if fault is not None:
            self._update(index, fault=fault)
        if isinstance(fault, Busy):
            await self._reject(index, responder, 503, fault.message, "Service Unavailable")
            return
        if isinstance(fault, ServerError):
            await self._reject(index, responder, fault.status, fault.message, "InternalServerError")
            return
        if isinstance(fault, DropConnection) and fault.after_chunks <= 0:
            self._update(index, error="connection dropped (fault)", finished=True)
            await responder.hang_up()
            return
        prompt = body["prompt"]
        if body.get("add_special_tokens", True):
            prompt = BEGIN_OF_TEXT + prompt
        counted = self.counter.count(self.root, prompt)
        tokens = counted.total
        max_tokens = body.get("max_tokens", 16)
        if max_tokens is None:
            max_tokens = self.max_model_len - tokens
        self._update(index, prompt=prompt, prompt_tokens=tokens)
        message = self._context_check(tokens, int(max_tokens))
        if message is not None:
            await self._reject(index, responder, 400, message, "BadRequestError", "input_tokens")
            return
        common = common_prefix_length(self.cache, prompt) if self.cache else 0
        cached = min(counted.prefix(common), tokens - 1) // BLOCK * BLOCK if common else 0
        script_request = ScriptRequest(
            endpoint="generate",
            model=str(name),
            prompt=prompt,
            raw=True,
            options={k: v for k, v in body.items() if k != "prompt"},
            index=self._script_calls,
        )
        self._script_calls += 1
        try:
            output = self.script(script_request)
            if inspect.isawaitable(output):
                output = await output
        except Exception as exc:  # a failing script is the test's bug: make it loud, as a 500
            text = f"emulator script failed: {type(exc).__name__}: {exc}"
            await self._reject(index, responder, 500, text, "InternalServerError")
            return
        stop = body.get("stop") or []
        generation = run_vllm_generation(
            continue_output(output, script_request.partial),
            max_tokens=int(max_tokens),
            stop=[stop] if isinstance(stop, str) else [str(s) for s in stop],
            stop_token_ids=[int(i) for i in body.get("stop_token_ids") or []],
            skip_special_tokens=body.get("skip_special_tokens", True) is not False,
        )
        self.cache = prompt + generation.generated
        usage: dict[str, Any] = {
            "prompt_tokens": tokens,
            "total_tokens": tokens + generation.completion_tokens,
            "completion_tokens": generation.completion_tokens,
        }
        if self.enable_prompt_tokens_details:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        self._update(
            index,
            cached_tokens=cached,
            prompt_eval_count=tokens,
            eval_count=generation.completion_tokens,
        )
        head: dict[str, Any] = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion"}
        head.update(created=int(started), model=name)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if stream:
            await self._stream(
                index, responder, head, generation, usage if include_usage else None, fault, prompt
            )
            return
        await anyio.sleep(self.latency)
        finish = generation.finish
        choice = _choice(generation.text, finish, prompt_logprobs=None)
        self._update(
            index, completion=generation.text, done_reason=finish.finish_reason, finished=True
        )
        await responder.json(200, {**head, "choices": [choice], "usage": usage})

    def _context_check(self, tokens: int, max_tokens: int) -> str | None:
        """vLLM's context-length message, or None when the request fits."""
        limit = self.max_model_len
        if tokens + max_tokens <= limit:
            return None
        if version_tuple(self.version) < (0, 10):
            return (
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{tokens + max_tokens} tokens ({tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        return (
            f"You passed {tokens} input tokens and requested {max_tokens} output tokens. However, "
            f"the model's context length is only {limit} tokens, resulting in a maximum input "
            f"length of {limit - max_tokens} tokens. Please reduce the length of the input prompt."
        )

    async def _stream(
        self,
        index: int,
        responder: Responder,
        head: dict[str, Any],
        generation: VLLMGeneration,
        usage: dict[str, Any] | None,
        fault: Fault | None,
        prompt: str,
    ) -> None:
        interval = 1.0 / self.token_rate if self.token_rate else 0.0
        sent: list[str] = []

        async def event(payload: Any, *, end: bool = False) -> None:
            if not responder.started:
                await responder.start(200, "text/event-stream; charset=utf-8")
            data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            await responder.write(f"data: {data}\n\n".encode(), end=end)

        await anyio.sleep(self.latency)
        try:
            for position, step in enumerate(generation.steps):
                if position:
                    await anyio.sleep(interval)
                if await self._fault_at(index, responder, fault, position, event):
                    return
                choice = _choice(step.text, step, prompt_token_ids=None, token_ids=None)
                await event({**head, "choices": [choice]})
                sent.append(step.text)
            if await self._fault_at(
                index, responder, fault, len(generation.steps), event, last=True
            ):
                return
            if usage is not None:
                await event({**head, "choices": [], "usage": usage})
            self._update(
                index,
                completion="".join(sent),
                done_reason=generation.finish.finish_reason,
                finished=True,
            )
            await event("[DONE]", end=True)
        finally:
            if responder.client_gone.is_set() or responder.aborted:
                self._update(
                    index, completion="".join(sent), cancelled=responder.client_gone.is_set()
                )
                # The server aborts the request: its cache holds what was generated so far.
                self.cache = prompt + "".join(sent)

    async def _fault_at(
        self,
        index: int,
        responder: Responder,
        fault: Fault | None,
        position: int,
        event: Callable[..., Any],
        *,
        last: bool = False,
    ) -> bool:
        """Apply the fault due at `position`; True when the stream is over."""
        after = getattr(fault, "after_chunks", None)
        if fault is None or after is None or not (after == position or (last and after > position)):
            return False
        if isinstance(fault, Stall):
            await (anyio.sleep_forever() if fault.seconds is None else anyio.sleep(fault.seconds))
        elif isinstance(fault, GarbageLine):
            await event(fault.line)
        elif isinstance(fault, ErrorLine):
            self._update(index, error=fault.message, finished=True)
            await event(self._error(500, fault.message, "InternalServerError"))
            await event("[DONE]", end=True)
            return True
        elif isinstance(fault, DropConnection):
            self._update(index, error="connection dropped (fault)", finished=True)
            if responder.started:
                await responder.abort(b'data: {"id":"')
            else:
                await responder.hang_up()
            return True
        return False


def _choice(text: str, finish: Step, **fields: Any) -> dict[str, Any]:
    """One choice as vLLM dumps it (every field it sets explicitly, None included)."""
    return {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish.finish_reason,
        "stop_reason": finish.stop_reason,
        **fields,
    }
