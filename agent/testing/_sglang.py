"""`SGLangEmulator`: a real HTTP server on 127.0.0.1 that speaks SGLang's native protocol.

The same scripts as `OllamaEmulator` (`answer`, `call_tool`, ... from `agent.testing._model`)
say what the model writes, Llama-native, end token included; the emulator then does what SGLang
does with it (checked against SGLang's source, see docs/engines.md (SGLang)):

* `POST /generate` takes `text` (its tokenizer adds the BOS: a prompt sent with its own
  `<|begin_of_text|>` gets two) and `sampling_params` (`max_new_tokens` defaults to 128,
  `skip_special_tokens` to true, which drops `<|python_tag|>` from the text); an unknown
  sampling parameter is an error.
* The stream is server-sent events, `data: {"text", "output_ids", "meta_info"}` per token, then
  `data: [DONE]`. `text` is the whole completion so far, or the new part with
  `incremental_streaming_output=True`. The completion ends at a stop token (`<|eot_id|>`,
  `<|eom_id|>`, `<|end_of_text|>`, any of `stop_token_ids`), trimmed from the text and reported
  as `finish_reason: {"type": "stop", "matched": id}`; at a stop string (`matched`: the string,
  the text cut before it in the last event only); or at `max_new_tokens` (`"length"`; checked
  first, so a stop token at that position stays in the text).
* A prompt longer than the context, or one whose `max_new_tokens` does not fit, is rejected the
  way the tokenizer manager does (status 200 and `data: {"error": {"message"}}` once streaming,
  400 otherwise); one longer than the KV pool (`max_total_num_tokens`) is aborted by the
  scheduler (`finish_reason: {"type": "abort", "status_code": 400}`).
* `meta_info` carries `prompt_tokens` (BOS included), `completion_tokens` (the stop token
  included), `cached_tokens` (a radix cache of recent prompts and completions) and, at the end,
  `e2e_latency`.
* `/tokenize` (`/v1/tokenize`; `tokenize_endpoint=False` for servers before it), `/model_info`
  and `/server_info` (and their `/get_...` names; `legacy_endpoints=True`: only those),
  `/v1/models` (`max_model_len`), `/health`. With `api_key`, every path but `/health` wants
  `Authorization: Bearer <key>` (401 `{"error": "Unauthorized"}`).

Faults (`agent.testing._model`) hit `/generate`: `Busy` aborts the stream at once with status
503 (a full queue), `ServerError` answers its status, `DropConnection`, `Stall`, `GarbageLine` at
their event, `ErrorLine` aborts the generation there (status 500). `emu.requests` records every
request like `OllamaEmulator`'s (`prompt` is the `text` sent; `options` the sampling params).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread

from agent.llama3 import common_prefix_length
from agent.llama3 import count_tokens as llama_count_tokens
from agent.testing._emulator import RecordedRequest
from agent.testing._http import HttpRequest, HttpServer, Responder
from agent.testing._model import (
    BUSY_MESSAGE,
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

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
QUEUE_FULL = "The request queue is full."

_SPECIAL_IDS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}
_EOS_IDS = frozenset({128001, 128008, 128009})  # Llama 3.1 Instruct's generation_config
# `SamplingParams`' API fields (srt/sampling/sampling_params.py): anything else is refused.
# fmt: off
_SAMPLING_KEYS = frozenset({
    "max_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p", "top_k",
    "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens", "n",
    "json_schema", "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens",
    "spaces_between_special_tokens", "no_stop_trim", "custom_params", "stream_interval",
    "logit_bias", "sampling_seed",
})
# fmt: on


def token_id(piece: str) -> int:
    """A stable stand-in id for a token-like piece; Llama 3's ids for special tokens."""
    return _SPECIAL_IDS.get(piece, zlib.crc32(piece.encode()) % 128000)


class _Rejected(Exception):
    """The tokenizer manager refused the request (a `ValueError` in SGLang)."""


class SGLangEmulator:
    """An SGLang server for tests, scripted like `OllamaEmulator`.

    ```python
    async with SGLangEmulator(call_tool("add", {"a": 1, "b": 2}, then="3")) as emu:
        backend = SGLangBackend(emu.url)
        ...
    ```

    Knobs: `model_path` and `served_model_name` (what the server runs and calls it),
    `context_length` (its context), `max_total_num_tokens` (the KV pool; None: room for the
    whole context), `version`, `api_key`, `incremental_streaming_output`, `tokenize_endpoint`,
    `legacy_endpoints`, `allow_auto_truncate` (cut prompts that are too long, as the flag
    does), `latency` (seconds before the first event), `token_rate` (events per second after
    it), `stream_interval` (tokens per event, as the server flag or a lagging client make it),
    `faults`, `count_tokens`, `max_records`, `raise_errors` (as `OllamaEmulator`'s).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        model_path: str = "meta-llama/Llama-3.1-8B-Instruct",
        served_model_name: str | None = None,
        context_length: int = 131072,
        max_total_num_tokens: int | None = None,
        version: str = "0.5.5",
        api_key: str | None = None,
        incremental_streaming_output: bool = False,
        tokenize_endpoint: bool = True,
        legacy_endpoints: bool = False,
        allow_auto_truncate: bool = False,
        latency: float = 0.0,
        token_rate: float | None = None,
        stream_interval: int = 1,
        faults: Iterable[Fault] = (),
        count_tokens: Callable[[str], int] = llama_count_tokens,
        port: int = 0,
        raise_errors: bool = True,
        max_records: int | None = None,
    ) -> None:
        self.script: Script = script if script is not None else echo()
        self.model_path = model_path
        self.served_model_name = served_model_name or model_path
        self.context_length = context_length
        self.max_total_num_tokens = max_total_num_tokens or context_length + 64
        self.version = version
        self.api_key = api_key
        self.incremental_streaming_output = incremental_streaming_output
        self.tokenize_endpoint = tokenize_endpoint
        self.legacy_endpoints = legacy_endpoints
        self.allow_auto_truncate = allow_auto_truncate
        self.latency = latency
        self.token_rate = token_rate
        self.stream_interval = max(stream_interval, 1)
        self.count_tokens = count_tokens
        self.raise_errors = raise_errors
        self._faults = FaultBook(tuple(faults))
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._recorded_total = 0
        self.cache: deque[str] = deque(maxlen=32)  # texts in the radix cache (BOS not included)
        self._script_calls = 0
        self.in_flight = 0  # generations being answered now
        self.max_in_flight = 0  # the most at once so far
        self._port = port
        self._server: HttpServer | None = None
        self._errors: list[Exception] = []

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> SGLangEmulator:
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
        summary = f"the SGLang emulator failed inside {len(self._errors)} request handler(s)"
        if exc is not None:
            exc.add_note(f"{summary}: " + "; ".join(repr(e) for e in self._errors))
            return
        raise ExceptionGroup(summary, list(self._errors))

    @contextlib.contextmanager
    def start_in_thread(self) -> Iterator[SGLangEmulator]:
        """Run the emulator on an event loop in a background thread, for synchronous code."""
        with anyio.from_thread.start_blocking_portal() as portal:
            self.portal: anyio.from_thread.BlockingPortal = portal
            with portal.wrap_async_context_manager(self):
                yield self

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the backend's host."""
        assert self._server is not None, "the emulator is not running: use `async with`"
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised inside the emulator's handlers (each closed its connection)."""
        return list(self._errors)

    @property
    def open_connections(self) -> int:
        """Client connections open now, idle keep-alive ones included."""
        return self._server.open_connections if self._server is not None else 0

    async def refuse_connections(self) -> None:
        """Close the listening socket and every connection: clients get 'connection refused'."""
        assert self._server is not None
        await self._server.stop_listening()

    async def accept_connections(self) -> None:
        """Listen again on the same port."""
        assert self._server is not None
        await self._server.listen()

    def inject(self, fault: Fault) -> None:
        """Add a fault; it hits the next `fault.times` generations."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return list(self._records)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The `/generate` requests, oldest first."""
        return [r for r in self._records if r.path == "/generate"]

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
        path = request.path
        if (
            self.api_key is not None
            and not path.startswith("/health")
            and request.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            self._record(method=request.method, path=path, status=401, error="Unauthorized")
            await responder.json(401, {"error": "Unauthorized"})
            return
        info = ("/get_model_info",) if self.legacy_endpoints else ("/model_info", "/get_model_info")
        server = (
            ("/get_server_info",) if self.legacy_endpoints else ("/server_info", "/get_server_info")
        )
        tokenize = ("/tokenize", "/v1/tokenize") if self.tokenize_endpoint else ()
        if request.method == "GET" and path in ("/health", "/health_generate"):
            self._record(method="GET", path=path)
            await responder.respond(200, "text/plain", b"")
        elif request.method == "GET" and path in info:
            self._record(method="GET", path=path)
            await responder.json(200, self._model_info())
        elif request.method == "GET" and path in server:
            self._record(method="GET", path=path)
            await responder.json(200, self._server_info())
        elif request.method == "GET" and path == "/v1/models":
            self._record(method="GET", path=path)
            await responder.json(200, self._models())
        elif request.method == "POST" and path in tokenize:
            await self._tokenize(request, responder)
        elif request.method in ("POST", "PUT") and path == "/generate":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self._generate(request, responder)
            finally:
                self.in_flight -= 1
        else:
            self._record(method=request.method, path=path, status=404)
            await responder.json(404, {"detail": "Not Found"})

    def _model_info(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "tokenizer_path": self.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
        }

    def _server_info(self) -> dict[str, Any]:
        # `dataclasses.asdict(server_args)` and the scheduler's info, a few of their many keys.
        return {
            "model_path": self.model_path,
            "tokenizer_path": self.model_path,
            "served_model_name": self.served_model_name,
            "context_length": None,
            "api_key": None,
            "incremental_streaming_output": self.incremental_streaming_output,
            "allow_auto_truncate": self.allow_auto_truncate,
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_req_input_len": min(self.context_length, self.max_total_num_tokens) - 1,
            "internal_states": [{"last_gen_throughput": 0.0}],
            "version": self.version,
        }

    def _models(self) -> dict[str, Any]:
        card = {
            "id": self.served_model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "sglang",
            "root": self.served_model_name,
            "max_model_len": self.context_length,
        }
        return {"object": "list", "data": [card]}

    async def _body(self, request: HttpRequest, responder: Responder) -> dict[str, Any] | None:
        """The JSON body, or None after answering 400 the way SGLang rewrites FastAPI's 422."""
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            message = f"JSON decode error: {exc}"
        else:
            if isinstance(body, dict):
                return body
            message = "Input should be a valid dictionary or object"
        self._record(method=request.method, path=request.path, status=400, error=message)
        await responder.json(
            400, {"object": "error", "message": message, "type": "Bad Request", "code": 400}
        )
        return None

    async def _tokenize(self, request: HttpRequest, responder: Responder) -> None:
        body = await self._body(request, responder)
        if body is None:
            return
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            self._record(method="POST", path=request.path, body=body, status=400)
            await responder.json(400, {"object": "error", "message": "prompt", "code": 400})
            return
        pieces = ["<|begin_of_text|>"] if body.get("add_special_tokens", True) else []
        pieces += split_tokens(prompt)
        count = self._count(prompt) + (1 if body.get("add_special_tokens", True) else 0)
        self._record(method="POST", path=request.path, body=body, prompt_tokens=count)
        # The ids are stand-ins (the count is the real tokenizer's); max_model_len is the
        # tokenizer's `model_max_length`, not the server's context (SGLang's quirk).
        await responder.json(
            200,
            {"tokens": [token_id(p) for p in pieces], "count": count, "max_model_len": 131072},
        )

    def _count(self, text: str) -> int:
        return self.count_tokens(text) if text else 0

    # --- generate ------------------------------------------------------------------------------

    async def _generate(self, request: HttpRequest, responder: Responder) -> None:
        started = time.perf_counter()
        body = await self._body(request, responder)
        if body is None:
            return
        text = body.get("text")
        params = body.get("sampling_params") or {}
        stream = body.get("stream") is True
        index = self._record(
            method=request.method,
            path="/generate",
            body=body,
            headers=dict(request.headers),
            model=self.served_model_name,
            prompt=text if isinstance(text, str) else None,
            raw=True,
            stream=stream,
            options=params if isinstance(params, dict) else {},
        )
        fault = self._faults.take("/generate") or self._faults.take("/api/generate")
        if fault is not None:
            self._update(index, fault=fault)
        if isinstance(fault, ServerError):
            self._update(index, status=fault.status, error=fault.message, finished=True)
            await responder.json(
                fault.status,
                {"object": "error", "message": fault.message, "type": str(fault.status),
                 "param": None, "code": fault.status},
            )  # fmt: skip
            return
        try:
            prompt_tokens, cached = self._admit(text, params)
        except _Rejected as exc:
            self._update(index, status=200 if stream else 400, error=str(exc), finished=True)
            await self._reject(responder, str(exc), stream=stream)
            return
        self._update(index, prompt_tokens=prompt_tokens, cached_tokens=cached)
        assert isinstance(text, str)
        assert isinstance(params, dict)
        rid = secrets.token_hex(16)
        meta = {
            "id": rid,
            "finish_reason": None,
            "prompt_tokens": prompt_tokens,
            "weight_version": "default",
            "cached_tokens": cached,
        }
        if isinstance(fault, Busy):
            message = QUEUE_FULL if fault.message == BUSY_MESSAGE else fault.message
            abort = {"type": "abort", "message": message, "status_code": 503, "err_type": None}
            self._update(index, error=message, finished=True, done_reason="abort")
            await self._abort_at_once(responder, meta, abort, stream=stream)
            return
        limit = min(self.context_length, self.max_total_num_tokens) - 1  # max_req_input_len
        if prompt_tokens > limit:
            message = (
                f"Input length ({prompt_tokens} tokens) exceeds the maximum allowed length "
                f"({limit} tokens). Use a shorter input or enable --allow-auto-truncate."
            )
            abort = {"type": "abort", "message": message, "status_code": 400, "err_type": None}
            self._update(index, error=message, finished=True, done_reason="abort")
            await self._abort_at_once(responder, meta, abort, stream=stream)
            return
        try:
            steps, finish, generated = await self._run_script(text, params, index)
        except Exception as exc:  # a failing script is the test's bug: make it loud, as a 500
            message = f"emulator script failed: {type(exc).__name__}: {exc}"
            self._update(index, status=500, error=message, finished=True)
            await responder.json(500, {"object": "error", "message": message, "code": 500})
            return
        self.cache.append(text + generated)
        try:
            await self._send(
                responder,
                index=index,
                meta=meta,
                steps=steps,
                finish=finish,
                stream=stream,
                fault=fault,
                started=started,
            )
        except BaseException:
            self._update(index, cancelled=True)  # the client went away (or the server stopped)
            raise

    def _admit(self, text: Any, params: Any) -> tuple[int, int]:
        """(prompt tokens with the BOS, cached tokens), or `_Rejected` as the tokenizer manager
        rejects a request (`_validate_one_request`, `SamplingParams.verify`)."""
        if not isinstance(text, str) or not text:
            raise _Rejected("Either text, input_ids or input_embeds should be provided.")
        if not isinstance(params, dict):
            raise _Rejected("sampling_params should be a dict")
        unknown = sorted(set(params) - _SAMPLING_KEYS)
        if unknown:
            raise _Rejected(f"SamplingParams got an unexpected keyword argument '{unknown[0]}'")
        tokens = 1 + self._count(text)  # the tokenizer adds the BOS (a second if text has one)
        if tokens >= self.context_length:
            if not self.allow_auto_truncate:
                raise _Rejected(
                    f"The input ({tokens} tokens) is longer than the model's context length "
                    f"({self.context_length} tokens)."
                )
            tokens = self.context_length
        max_new = params.get("max_new_tokens", 128)
        if isinstance(max_new, int) and max_new + tokens > self.context_length:
            if not self.allow_auto_truncate:
                raise _Rejected(
                    "Requested token count exceeds the model's maximum context length of "
                    f"{self.context_length} tokens. You requested a total of {max_new + tokens} "
                    f"tokens: {tokens} tokens from the input messages and {max_new} tokens for "
                    "the completion. Please reduce the number of tokens in the input messages "
                    "or the completion to fit within the limit."
                )
            params["max_new_tokens"] = max(0, self.context_length - tokens)
        return tokens, self._cached(text, tokens)

    def _cached(self, text: str, tokens: int) -> int:
        """Tokens of `text`'s longest prefix in the radix cache, BOS included (at least the last
        prompt token is always computed)."""
        if not self.cache:
            return 0
        cut = 0
        for held in self.cache:
            shared = common_prefix_length(held, text)
            # A token boundary: the end of what is held (the prompt extends it), else the end
            # of the last special token they share.
            cut = max(cut, shared if shared == len(held) else text.rfind("|>", 0, shared) + 2)
        return min(1 + self._count(text[:cut]), tokens - 1)

    async def _reject(self, responder: Responder, message: str, *, stream: bool) -> None:
        if not stream:
            await responder.json(400, {"error": {"message": message}})
            return
        await responder.start(200, SSE)
        await responder.write(_sse({"error": {"message": message}}))
        await responder.write(b"data: [DONE]\n\n", end=True)

    async def _abort_at_once(
        self, responder: Responder, meta: dict[str, Any], abort: dict[str, Any], *, stream: bool
    ) -> None:
        status = int(abort["status_code"])
        if not stream:  # `_handle_abort_finish_reason`: an error status instead of the output
            payload: Any = (
                {"error": {"message": abort["message"]}}
                if status == 400
                else {"object": "error", "message": abort["message"], "code": status}
            )
            await responder.json(status, payload)
            return
        event = {
            "text": "",
            "output_ids": [],
            "meta_info": {**meta, "finish_reason": abort, "completion_tokens": 0},
        }
        await responder.start(200, SSE)
        await responder.write(_sse(event))
        await responder.write(b"data: [DONE]\n\n", end=True)

    async def _run_script(
        self, text: str, params: dict[str, Any], index: int
    ) -> tuple[list[tuple[str, list[int]]], dict[str, Any], str]:
        """The events' (text so far, ids so far) per token, the finish reason, and the
        generated text the KV cache keeps (the last token is never forwarded)."""
        request = ScriptRequest(
            endpoint="generate",
            model=self.served_model_name,
            prompt=text,
            raw=True,
            options=params,
            index=self._script_calls,
        )
        self._script_calls += 1
        output = self.script(request)
        if inspect.isawaitable(output):
            output = await output
        output = continue_output(output, request.partial)
        pieces = (
            split_tokens(output)
            if isinstance(output, str)
            else [p for piece in output for p in split_tokens(piece)]
        )
        if not any(token_id(p) in _EOS_IDS for p in pieces):
            pieces.append("<|eot_id|>")  # a script that ends without one ends the turn
        max_new = params.get("max_new_tokens", 128)
        if not isinstance(max_new, int):
            max_new = self.context_length
        stop_ids = _EOS_IDS | {int(t) for t in params.get("stop_token_ids") or ()}
        stops = params.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [str(s) for s in stops]
        skip = params.get("skip_special_tokens", True) is not False
        shown: list[str] = []
        ids: list[int] = []
        steps: list[tuple[str, list[int]]] = []
        finish: dict[str, Any] = {"type": "length", "length": max_new}
        for piece in pieces[: max(max_new, 0)]:
            ids.append(token_id(piece))
            control = SPECIAL_RE.fullmatch(piece) is not None
            shown.append("" if control and skip else piece)
            so_far = "".join(shown)
            if len(ids) >= max_new:  # `Req.check_finished`: the length comes first
                steps.append((so_far, list(ids)))
                break
            if ids[-1] in stop_ids:
                finish = {"type": "stop", "matched": ids[-1]}
                steps.append(("".join(shown[:-1]), list(ids)))
                break
            matched = next((s for s in stops if s and s in so_far), None)
            if matched is not None:
                finish = {"type": "stop", "matched": matched}
                steps.append((so_far[: so_far.find(matched)], list(ids)))
                break
            steps.append((so_far, list(ids)))
        if not steps:
            steps.append(("", []))
        generated = "".join(pieces[: max(len(ids) - 1, 0)])
        self._update(index, completion=steps[-1][0] if steps else "", eval_count=len(ids))
        return steps, finish, generated

    async def _send(
        self,
        responder: Responder,
        *,
        index: int,
        meta: dict[str, Any],
        steps: Sequence[tuple[str, list[int]]],
        finish: dict[str, Any],
        stream: bool,
        fault: Fault | None,
        started: float,
    ) -> None:
        interval = 1.0 / self.token_rate if self.token_rate else 0.0
        await anyio.sleep(self.latency)
        if not stream:
            last_text, last_ids = steps[-1] if steps else ("", [])
            whole = {**meta, "finish_reason": finish, "completion_tokens": len(last_ids)}
            whole["e2e_latency"] = time.perf_counter() - started
            self._update(index, finished=True, done_reason=finish["type"])
            await responder.json(
                200, {"text": last_text, "output_ids": last_ids, "meta_info": whole}
            )
            return
        # `--stream-interval k` (or a client slower than the server, `_wait_one_response`):
        # an event every k tokens, and the last.
        k = self.stream_interval
        steps = [s for i, s in enumerate(steps) if (i + 1) % k == 0 or i == len(steps) - 1]
        await responder.start(200, SSE)
        sent_text, sent_ids = "", 0
        for position, (so_far, ids) in enumerate(steps):
            if position:
                await anyio.sleep(interval)
            if await self._fault_at(responder, index, fault, position, meta, sent_text):
                return
            last = position == len(steps) - 1
            info: dict[str, Any] = {
                **meta,
                "finish_reason": finish if last else None,
                "completion_tokens": len(ids),
            }
            if last:
                info["e2e_latency"] = time.perf_counter() - started
            if self.incremental_streaming_output:
                # The detokenizer sends `output_str[sent_offset:]`: nothing when the last event
                # trims a stop string that was already sent.
                event = {"text": so_far[len(sent_text) :], "output_ids": ids[sent_ids:]}
            else:
                event = {"text": so_far, "output_ids": ids}
            sent_text, sent_ids = so_far, len(ids)
            await responder.write(_sse({**event, "meta_info": info}))
        self._update(index, finished=True, done_reason=finish["type"])
        await responder.write(b"data: [DONE]\n\n", end=True)

    async def _fault_at(
        self,
        responder: Responder,
        index: int,
        fault: Fault | None,
        position: int,
        meta: dict[str, Any],
        sent_text: str,
    ) -> bool:
        """Apply the fault due before event `position`; True when the stream is over."""
        if getattr(fault, "after_chunks", None) != position:
            return False
        if isinstance(fault, Stall):
            await (anyio.sleep_forever() if fault.seconds is None else anyio.sleep(fault.seconds))
        elif isinstance(fault, GarbageLine):
            await responder.write(fault.line.encode() + b"\n\n")
        elif isinstance(fault, DropConnection):
            self._update(index, error="connection dropped (fault)", finished=True)
            await responder.abort(b'data: {"text": "')
            return True
        elif isinstance(fault, ErrorLine):
            abort = {
                "type": "abort",
                "message": fault.message,
                "status_code": 500,
                "err_type": None,
            }
            event = {
                "text": "" if self.incremental_streaming_output else sent_text,
                "output_ids": [],
                "meta_info": {**meta, "finish_reason": abort, "completion_tokens": position},
            }
            self._update(index, error=fault.message, finished=True, done_reason="abort")
            await responder.write(_sse(event))
            await responder.write(b"data: [DONE]\n\n", end=True)
            return True
        return False


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
