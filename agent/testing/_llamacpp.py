"""`LlamaCppEmulator`: a real HTTP server on 127.0.0.1 that speaks llama.cpp's `llama-server`.

The endpoints `LlamaCppBackend` uses, as llama.cpp 0.5.0-dev (vendored by llama-cpp-python
0.3.36) answers them (tools/server; docs/engines.md (llama.cpp) cites the functions):

* `GET /health` (public even with an API key), `GET /props` (`default_generation_settings.n_ctx`,
  `model_path`, `model_alias`, `build_info`), `GET /v1/models` (`id`, `aliases`, `meta.n_ctx`),
  `POST /tokenize` (`content`, `add_special`, `with_pieces`; special tokens parsed).
* `POST /completion`, streamed: SSE `data: {...}` events, one per token with `content` and
  `tokens` ([its id]); control tokens (`<|python_tag|>`, `<|eom_id|>`, `<|eot_id|>`, headers) as
  empty text unless `special=True` (the server's `--special`); the end token's own event, then a
  final event with `stop: true`, `stop_type` (`eos`, `word`, `limit`), `stopping_word`,
  `tokens_cached` and `timings` (`prompt_n`, `cache_n`, `predicted_n`, `*_ms`); no `[DONE]`;
  the connection closed after the stream. The server adds a BOS to every prompt (one sent as
  text too makes two: `RecordedRequest.prompt` keeps it, `prompt_tokens` counts it).
  A prompt of `n_ctx` tokens or more is a 400 `exceed_context_size_error` with
  `n_prompt_tokens` and `n_ctx`; the slot's cache gives `cache_n` (the common prefix with the
  last prompt and generation) and `prompt_n` (the rest). The `model` of a request is ignored.
* `--api-key`: every endpoint but `/health` wants `Authorization: Bearer KEY` (or `X-Api-Key`),
  else 401 `authentication_error`.

The same `Script`s drive it as `OllamaEmulator` (`answer`, `call_tool`, ...; the request's
`prompt` is without the BOS), and the same faults: `Busy` (503 `unavailable_error`, as while
the model loads), `ServerError`, `DropConnection`, `Stall`, `GarbageLine`, `ErrorLine` (an SSE
error event); a fault with the default paths hits `/completion`, and `Busy(paths=("/props",))`
makes another endpoint answer 503 `Loading model`. Simplified: a stop word is
found in the whole text after each token (the server also holds back text that could begin
one); tokens are the emulator's approximation of Llama 3's (`agent.llama3.count_tokens`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread

from agent.llama3 import BEGIN_OF_TEXT, SPECIAL_TOKENS, common_prefix_length, count_tokens
from agent.testing._emulator import RecordedRequest
from agent.testing._http import ClientGone, HttpRequest, HttpServer, Responder
from agent.testing._model import (
    GENERATION_PATHS,
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
from agent.testing._response import continue_output, split_tokens

SPECIAL_IDS = {text: 128000 + i for i, text in enumerate(SPECIAL_TOKENS)}
EOG = frozenset({"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"})
BUILD_INFO = "b6940-0c1e570"
_JSON = "application/json; charset=utf-8"


def token_id(piece: str) -> int:
    """A special token's real id; a stable stand-in below 128000 for any other piece."""
    return SPECIAL_IDS.get(piece, zlib.crc32(piece.encode()) % 128000)


def tokenize(text: str, *, add_special: bool) -> list[str]:
    """Token-like pieces of `text`, special tokens parsed, with the server's BOS if asked."""
    return (["<|begin_of_text|>"] if add_special else []) + split_tokens(text)


def _error(code: int, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": kind, **extra}}


class LlamaCppEmulator:
    """A `llama-server` for tests, scripted like `OllamaEmulator`.

    ```python
    async with LlamaCppEmulator(answer("Hi.")) as emu:
        backend = LlamaCppBackend(emu.url)
        ...
        assert emu.completions[-1].prompt_tokens == ...
    ```

    `alias`: the model's name (`--alias`; `/v1/models` `id`), `model_path`: the GGUF it says
    it serves, `n_ctx`: the context per slot (`-c` / `-np`), `api_key`: `--api-key`,
    `special`: `--special` (control tokens as text), `latency`: seconds before the first token
    (reported as prompt time), `token_rate`: tokens per second after it (None: at once),
    `faults`, `port`, `max_records` (keep the newest N requests).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        alias: str = "llama3.1",
        model_path: str = "/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        n_ctx: int = 8192,
        api_key: str | None = None,
        special: bool = False,
        latency: float = 0.0,
        token_rate: float | None = None,
        faults: Iterable[Fault] = (),
        port: int = 0,
        max_records: int | None = None,
    ) -> None:
        self.script: Script = script if script is not None else echo()
        self.alias = alias
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.api_key = api_key
        self.special = special
        self.latency = latency
        self.token_rate = token_rate
        self._faults = FaultBook(tuple(faults))
        self._port = port
        self._server: HttpServer | None = None
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self.cache = ""  # the slot's KV cache, as text: the last prompt (with BOS) and generation
        self._script_calls = 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> LlamaCppEmulator:
        self._server = HttpServer(self._dispatch, port=self._port)
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.__aexit__(exc_type, exc, traceback)
            if server.errors and exc is None:
                raise ExceptionGroup("the llama-server emulator failed", list(server.errors))

    @property
    def port(self) -> int:
        assert self._server is not None, "the emulator is not running: use `async with`"
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def start_in_thread(self) -> Iterator[LlamaCppEmulator]:
        """Run the emulator on an event loop in a background thread, for synchronous code."""
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(self),
        ):
            self.portal: anyio.from_thread.BlockingPortal = portal
            yield self

    @property
    def open_connections(self) -> int:
        """Client connections open now (to see a client leak)."""
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
        """Add a fault; it hits the next `fault.times` matching requests."""
        self._faults.add(fault)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first."""
        return list(self._records)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The `/completion` requests, oldest first."""
        return [r for r in self._records if r.path == "/completion"]

    def _record(self, **fields: Any) -> RecordedRequest:
        record = RecordedRequest(**fields)
        self._records.append(record)
        return record

    def _replace(self, record: RecordedRequest, **changes: Any) -> RecordedRequest:
        new = dataclasses.replace(record, **changes)
        for i in range(len(self._records) - 1, -1, -1):
            if self._records[i] is record:
                self._records[i] = new
                break
        return new

    # --- routing -------------------------------------------------------------------------------

    async def _dispatch(self, request: HttpRequest, responder: Responder) -> None:
        route = (request.method, request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if route == ("GET", "/health"):
            self._record(method="GET", path="/health", headers=headers)
            await responder.json(200, {"status": "ok"})
            return
        if self.api_key is not None:
            given = headers.get("authorization", headers.get("x-api-key", ""))
            if given.removeprefix("Bearer ") != self.api_key:
                self._record(method=request.method, path=request.path, headers=headers, status=401)
                await responder.json(401, _error(401, "Invalid API Key", "authentication_error"))
                return
        if route != ("POST", "/completion") and isinstance(self._faults.take(request.path), Busy):
            # As while the model loads: every endpoint but /health answers 503.
            self._record(method=request.method, path=request.path, headers=headers, status=503)
            await responder.json(503, _error(503, "Loading model", "unavailable_error"))
            return
        handlers = {
            ("GET", "/props"): self._props,
            ("GET", "/v1/models"): self._models,
            ("POST", "/tokenize"): self._tokenize,
            ("POST", "/completion"): self._completion,
        }
        handler = handlers.get(route)
        if handler is None:
            self._record(method=request.method, path=request.path, headers=headers, status=404)
            await responder.json(404, _error(404, "File Not Found", "not_found_error"))
            return
        await handler(request, headers, responder)

    async def _props(self, request: HttpRequest, headers: Any, responder: Responder) -> None:
        self._record(method="GET", path="/props", headers=headers)
        await responder.json(
            200,
            {
                "default_generation_settings": {"n_ctx": self.n_ctx, "params": {"n_predict": -1}},
                "total_slots": 1,
                "model_alias": self.alias,
                "model_path": self.model_path,
                "bos_token": BEGIN_OF_TEXT,
                "eos_token": "<|eot_id|>",
                "build_info": BUILD_INFO,
            },
        )

    async def _models(self, request: HttpRequest, headers: Any, responder: Responder) -> None:
        self._record(method="GET", path="/v1/models", headers=headers)
        meta = {"vocab_type": 2, "n_vocab": 128256, "n_ctx": self.n_ctx, "n_ctx_train": 131072}
        entry = {"id": self.alias, "aliases": [self.alias], "tags": [], "object": "model"}
        await responder.json(
            200,
            {"object": "list", "data": [{**entry, "owned_by": "llamacpp", "meta": meta}]},
        )

    async def _tokenize(self, request: HttpRequest, headers: Any, responder: Responder) -> None:
        body = json.loads(request.body or b"{}")
        self._record(method="POST", path="/tokenize", headers=headers, body=body)
        pieces = tokenize(str(body.get("content", "")), add_special=bool(body.get("add_special")))
        if body.get("with_pieces"):
            tokens: list[Any] = [{"id": token_id(p), "piece": p} for p in pieces]
        else:
            tokens = [token_id(p) for p in pieces]
        await responder.json(200, {"tokens": tokens})

    # --- /completion ---------------------------------------------------------------------------

    async def _completion(self, request: HttpRequest, headers: Any, responder: Responder) -> None:
        try:
            body = json.loads(request.body)
            prompt = body["prompt"]
            if type(prompt) is not str:
                raise TypeError("prompt")
        except (ValueError, KeyError, TypeError) as exc:
            self._record(method="POST", path="/completion", headers=headers, status=400)
            message = f"[json.exception] {exc}"
            await responder.json(400, _error(400, message, "invalid_request_error"))
            return
        record = self._record(
            method="POST",
            path="/completion",
            headers=headers,
            body=body,
            model=body.get("model"),
            prompt=BEGIN_OF_TEXT + prompt,  # what the model sees: the server adds the BOS
            stream=bool(body.get("stream")),
        )
        fault = self._faults.take(request.path) or self._faults.take(GENERATION_PATHS[0])
        if isinstance(fault, Busy):
            self._replace(record, status=503, fault=fault)
            await responder.json(503, _error(503, "Loading model", "unavailable_error"))
            return
        if isinstance(fault, ServerError):
            self._replace(record, status=fault.status, fault=fault)
            await responder.json(fault.status, _error(fault.status, fault.message, "server_error"))
            return
        seen = BEGIN_OF_TEXT + prompt
        n_prompt = len(tokenize(prompt, add_special=True))
        if n_prompt >= self.n_ctx:
            message = (
                f"request ({n_prompt} tokens) exceeds the available context size "
                f"({self.n_ctx} tokens), try increasing it"
            )
            self._replace(record, status=400, prompt_tokens=n_prompt)
            await responder.json(
                400,
                _error(
                    400,
                    message,
                    "exceed_context_size_error",
                    n_prompt_tokens=n_prompt,
                    n_ctx=self.n_ctx,
                ),
            )
            return
        shared = seen[: common_prefix_length(self.cache, seen)]
        cached = min(count_tokens(shared), n_prompt - 1) if shared else 0
        request_for_script = ScriptRequest(
            endpoint="generate",
            model=self.alias,
            prompt=prompt,
            raw=True,
            options={k: body[k] for k in ("temperature", "seed", "top_p", "top_k") if k in body},
            index=self._script_calls,
        )
        self._script_calls += 1
        output = self.script(request_for_script)
        if inspect.isawaitable(output):
            output = await output
        output = continue_output(output, request_for_script.partial)
        text = output if isinstance(output, str) else "".join(output)
        pieces = split_tokens(text)
        if not EOG.intersection(pieces):
            pieces.append("<|eot_id|>")  # a reply without an end token ends the turn
        n_predict = int(body.get("n_predict", -1))
        stops = [s for s in body.get("stop", ()) if isinstance(s, str) and s]
        record = self._replace(record, prompt_tokens=n_prompt, cached_tokens=cached)
        started = time.monotonic()
        if self.latency:
            await anyio.sleep(self.latency)
        prompt_ms = (time.monotonic() - started) * 1000
        await responder.start(200, "text/event-stream")
        responder.close_after = True  # as llama-server does after every stream
        sent_text: list[str] = []
        generated: list[str] = []
        stop_type, stopping_word = "none", ""
        events = 0
        try:
            for piece in pieces:
                if 0 <= n_predict <= len(generated):
                    stop_type = "limit"
                    break
                generated.append(piece)
                control = piece in SPECIAL_IDS
                content = "" if control and not self.special else piece
                if piece in EOG:
                    stop_type = "eos"
                    content = piece if self.special else ""
                elif stops:
                    so_far = "".join(sent_text) + content
                    found = [(so_far.find(s), s) for s in stops if s in so_far]
                    if found:
                        at, word = min(found)
                        content = so_far[:at][len("".join(sent_text)) :]
                        stop_type, stopping_word = "word", word
                if await self._before_event(fault, events, responder):
                    self._replace(record, fault=fault, completion="".join(sent_text))
                    return
                sent_text.append(content)
                await self._event(
                    responder,
                    {
                        "index": 0,
                        "content": content,
                        "tokens": [token_id(piece)],
                        "stop": False,
                        "id_slot": -1,
                        "tokens_predicted": len(generated),
                        "tokens_evaluated": n_prompt,
                    },
                )
                events += 1
                if stop_type != "none":
                    break
                if self.token_rate:
                    await anyio.sleep(1 / self.token_rate)
            else:
                stop_type = "limit" if 0 <= n_predict <= len(generated) else "eos"
            if await self._before_event(fault, events, responder):
                self._replace(record, fault=fault, completion="".join(sent_text))
                return
            # The last token (an end token or not) is sampled but never decoded: the cache
            # holds the rest.
            kept = generated[:-1]
            self.cache = seen + "".join(kept)
            predicted_ms = (time.monotonic() - started) * 1000 - prompt_ms
            final = {
                "index": 0,
                "content": "",
                "tokens": [],
                "id_slot": 0,
                "stop": True,
                "model": self.alias,
                "tokens_predicted": len(generated),
                "tokens_evaluated": n_prompt,
                "prompt": seen,
                "has_new_line": "\n" in "".join(sent_text),
                "truncated": False,
                "stop_type": stop_type,
                "stopping_word": stopping_word,
                "tokens_cached": n_prompt + len(kept),
                "timings": {
                    "cache_n": cached,
                    "prompt_n": n_prompt - cached,
                    "prompt_ms": prompt_ms,
                    "predicted_n": len(generated),
                    "predicted_ms": predicted_ms,
                },
            }
            await self._event(responder, final)
            await responder.end()
        except ClientGone:
            self._replace(record, cancelled=True, completion="".join(sent_text))
            raise
        self._replace(
            record,
            completion="".join(sent_text),
            eval_count=len(generated),
            prompt_eval_count=n_prompt - cached,
            done_reason=stop_type,
            fault=fault,
            finished=True,
        )

    async def _event(self, responder: Responder, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        await responder.write(f"data: {data}\n\n".encode())

    async def _before_event(self, fault: Fault | None, events: int, responder: Responder) -> bool:
        """Fire `fault` once `events` events went out, if it is due; True if the stream ended."""
        if fault is None or events != getattr(fault, "after_chunks", -1):
            return False
        if isinstance(fault, DropConnection):
            await responder.abort(b'data: {"index":0,"content":"')
            raise ClientGone
        if isinstance(fault, Stall):
            if fault.seconds is None:
                await anyio.sleep_forever()
            else:
                await anyio.sleep(fault.seconds)
        elif isinstance(fault, GarbageLine):
            await responder.write(fault.line.encode() + b"\n\n")
        elif isinstance(fault, ErrorLine):
            # llama-server's in-stream error: `data: {"error": {...}}`, then the end.
            await self._event(responder, _error(500, fault.message, "server_error"))
            await responder.end()
            return True
        return False
