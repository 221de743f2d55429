"""`OllamaEmulator`: a real HTTP server on 127.0.0.1 that speaks Ollama's wire protocol.

The emulator's state (models, loaded models, prompt caches, faults, recorded requests), its
routes, and the small endpoints (`/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`,
`/api/pull`); the completion endpoints are in `agent.testing._completion`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread

from agent.llama3 import count_tokens as llama_count_tokens
from agent.testing import _completion
from agent.testing._completion import PromptCounter
from agent.testing._http import HttpRequest, HttpServer, Responder
from agent.testing._model import (
    EmulatedModel,
    Fault,
    FaultBook,
    Script,
    default_models,
    echo,
    family_of,
    keep_alive_seconds,
    normalize_name,
)
from agent.testing._response import NDJSON, Engine, line


def version_tuple(version: str) -> tuple[int, ...]:
    """`"0.12.6"` → `(0, 12, 6)`; pre-release suffixes are ignored."""
    parts: list[int] = []
    for part in version.lstrip("v").split("-")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """One request and what the emulator answered.

    For `/api/generate` and `/api/chat`: `prompt` is what the model saw (the raw prompt as sent,
    or the template's rendering), `prompt_tokens` its token count with the BOS Ollama adds,
    `cached_tokens` how many of them the emulated prompt cache already held, `prompt_eval_count`
    what the response reported, `completion` the text sent back, `cancelled` whether the client
    went away before the end, `reloaded` whether the model was (re)loaded for it (first use, or
    a changed `num_ctx`).
    """

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    error: str | None = None
    fault: Fault | None = None
    model: str | None = None
    prompt: str | None = None
    raw: bool | None = None
    stream: bool | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: Any = None
    num_ctx: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    completion: str = ""
    done_reason: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    truncated: bool = False
    reloaded: bool = False
    cancelled: bool = False
    finished: bool = False


class OllamaEmulator:
    """An Ollama server for tests, examples and benchmarks, scripted by a function.

    ```python
    from agent.testing import OllamaEmulator, call_tool

    async with OllamaEmulator(call_tool("get_weather", {"city": "Paris"}, then="Sunny.")) as emu:
        client = ollama.AsyncClient(emu.url)  # or OLLAMA_HOST=emu.url for a subprocess
        ...
        assert emu.requests[-1].prompt_eval_count == ...
    ```

    As a pytest fixture (anyio plugin; `anyio_backend` pins asyncio)::

        @pytest.fixture
        async def emu():
            async with OllamaEmulator(sequence("Hello.<|eot_id|>")) as emu:
                yield emu

    From synchronous code (a CLI test running `llama-agent` in a subprocess)::

        with OllamaEmulator(answer("Hi.")).start_in_thread() as emu:
            subprocess.run(["llama-agent", ...], env={**os.environ, "OLLAMA_HOST": emu.url})

    Knobs: `models` (names or `EmulatedModel`s), `pullable` (what `/api/pull` can fetch; None:
    any Llama 3.x name), `latency` (seconds before the first chunk, reported as prompt
    evaluation), `token_rate` (chunks per second after it; None: as fast as possible),
    `chunk_chars` (group tokens into chunks of about this many characters; None: one token per
    chunk, like Ollama), `load_delay` (seconds to load a model on first use or when `num_ctx`
    changes), `version` (what `/api/version` says, and which behaviours apply: tool-call ids
    from 0.12.10, `capabilities` from 0.6.4, streamed tool calls from 0.8), `engine`
    (`"llamarunner"` for ≤ 0.29, `"llama-server"` for ≥ 0.30; derived from `version` by
    default), `faults`, `num_parallel` and `max_queue` (Ollama's scheduler: extra requests
    wait; beyond the queue they get 503), `default_num_ctx` (None: by version), `count_tokens`
    (Llama 3's by default, counted incrementally when the tokenizer is exact: each prompt costs
    only what it added to a recent one, see `agent.testing._completion`; any other counter is
    called on whole texts), `max_records` (keep only the newest N requests in `emu.requests`,
    for a long-running emulator; None, the default: keep every one).

    A bug inside the emulator (an exception in a request handler, not a failing script, which
    answers 500) closes that connection and is kept in `emu.errors`; leaving the `async with`
    block then raises them as an `ExceptionGroup`, so a test cannot pass on a broken emulator
    without noticing. If the block is already raising, they are added to its exception as a
    note instead. `raise_errors=False` only keeps them in `emu.errors`.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        models: Iterable[str | EmulatedModel] | None = None,
        pullable: Iterable[str | EmulatedModel] | None = None,
        latency: float = 0.0,
        token_rate: float | None = None,
        chunk_chars: int | None = None,
        load_delay: float = 0.0,
        version: str = "0.12.6",
        engine: Engine | None = None,
        faults: Iterable[Fault] = (),
        num_parallel: int | None = None,
        max_queue: int = 512,
        default_num_ctx: int | None = None,
        count_tokens: Callable[[str], int] = llama_count_tokens,
        port: int = 0,
        raise_errors: bool = True,
        max_records: int | None = None,
    ) -> None:
        self.script: Script = script if script is not None else echo()
        self.latency = latency
        self.token_rate = token_rate
        self.chunk_chars = chunk_chars
        self.load_delay = load_delay
        self.version = version
        self.engine: Engine = engine or (
            "llama-server" if version_tuple(version) >= (0, 30) else "llamarunner"
        )
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.default_num_ctx = default_num_ctx or (
            2048 if version_tuple(version) < (0, 6, 7) else 4096
        )
        self.count_tokens = count_tokens
        self._prompt_counter: PromptCounter | None = None
        self.raise_errors = raise_errors
        self._models: dict[str, EmulatedModel] = {}
        for model in default_models() if models is None else models:
            self.add_model(model)
        self._pullable = (
            None
            if pullable is None
            else {_as_model(m).name.lower(): _as_model(m) for m in pullable}
        )
        self._faults = FaultBook(tuple(faults))
        if max_records is not None and max_records < 0:
            raise ValueError(f"max_records must be None (keep all) or >= 0, not {max_records}")
        self.max_records = max_records
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._recorded_total = 0  # requests recorded so far, dropped ones included
        self._port = port
        self._server: HttpServer | None = None
        self.loaded: dict[str, tuple[int, datetime]] = {}  # model -> (num_ctx, expires_at)
        self.cache: dict[str, str] = {}  # model -> prompt + completion held in its KV cache
        self.in_flight = 0  # requests being answered now
        self._script_calls = 0
        self._waiting = 0
        self._gate: anyio.Semaphore | None = None
        self._idle = anyio.Event()
        self._errors: list[Exception] = []

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> OllamaEmulator:
        if self.num_parallel:
            self._gate = anyio.Semaphore(self.num_parallel)
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
        summary = (
            f"the Ollama emulator failed inside {len(self._errors)} request handler(s); "
            "this is a bug in the emulator (or in code it calls), not in the client"
        )
        if exc is not None:
            details = "; ".join(f"{type(e).__name__}: {e}" for e in self._errors)
            exc.add_note(f"{summary}: {details}")
            return
        raise ExceptionGroup(summary, list(self._errors))

    @contextlib.contextmanager
    def start_in_thread(self) -> Iterator[OllamaEmulator]:
        """Run the emulator on an event loop in a background thread, for synchronous code.

        Async methods (`refuse_connections`, ...) can be called through `emu.portal.call(...)`.
        """
        with anyio.from_thread.start_blocking_portal() as portal:
            self.portal: anyio.from_thread.BlockingPortal = portal
            with portal.wrap_async_context_manager(self):
                yield self

    def version_at_least(self, *version: int) -> bool:
        """Whether the emulated server is at least this version (behaviours are versioned)."""
        return version_tuple(self.version) >= version

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised inside the emulator's handlers (each closed its connection)."""
        return list(self._errors)

    @property
    def port(self) -> int:
        assert self._server is not None, "the emulator is not running: use `async with`"
        return self._server.port

    @property
    def open_connections(self) -> int:
        """Client connections open now, idle keep-alive ones included (to see a client leak)."""
        return self._server.open_connections if self._server is not None else 0

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: pass it as the client's host or as `OLLAMA_HOST`."""
        return f"http://127.0.0.1:{self.port}"

    async def refuse_connections(self) -> None:
        """Close the listening socket and every connection: clients get 'connection refused'."""
        assert self._server is not None
        await self._server.stop_listening()

    async def accept_connections(self) -> None:
        """Listen again on the same port."""
        assert self._server is not None
        await self._server.listen()

    # --- models, faults, records ---------------------------------------------------------------

    def add_model(self, model: str | EmulatedModel) -> EmulatedModel:
        """Make a model available ("pulled")."""
        emulated = _as_model(model)
        self._models[emulated.name.lower()] = emulated
        return emulated

    def find_model(self, name: str) -> EmulatedModel | None:
        return self._models.get(normalize_name(name).lower())

    @property
    def models(self) -> tuple[EmulatedModel, ...]:
        return tuple(self._models.values())

    def inject(self, fault: Fault) -> None:
        """Add a fault; it hits the next `fault.times` matching requests."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (the newest `max_records` if bounded)."""
        return list(self._records)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The `/api/generate` and `/api/chat` requests, oldest first."""
        return [r for r in self._records if r.path in ("/api/generate", "/api/chat")]

    def reset(self) -> None:
        """Forget recorded requests, loaded models and prompt caches."""
        self._records.clear()  # in-flight requests keep their numbers and now update nothing
        self.loaded.clear()
        self.cache.clear()
        self._prompt_counter = None

    @property
    def prompt_counter(self) -> PromptCounter:
        """Counts prompts with `count_tokens`, incrementally when that is exact (`_completion`)."""
        counter = self._prompt_counter
        if counter is None or counter.counts_with is not self.count_tokens:
            counter = self._prompt_counter = PromptCounter(self.count_tokens)
        return counter

    async def wait_idle(self) -> None:
        """Wait until no request is in progress (e.g. to see a cancellation recorded).

        Wrap it in `anyio.fail_after(...)` to bound the wait.
        """
        while self.in_flight:
            await self._idle.wait()

    # --- for the emulator's own modules --------------------------------------------------------

    def _record(self, **fields: Any) -> int:
        """Record a request (`RecordedRequest` fields); its number, for `_update`."""
        self._records.append(RecordedRequest(**fields))
        self._recorded_total += 1
        return self._recorded_total - 1

    def _position(self, number: int) -> int | None:
        # Numbers count every request recorded; the deque holds only the newest when bounded.
        position = number - (self._recorded_total - len(self._records))
        return position if position >= 0 else None

    def _recorded(self, number: int) -> RecordedRequest | None:
        """The record numbered `number` as it is now; None once it was dropped."""
        position = self._position(number)
        return None if position is None else self._records[position]

    def _update(self, number: int, **changes: Any) -> None:
        """Change a record; nothing if it was dropped (bounded recording, or `reset()`)."""
        position = self._position(number)
        if position is not None:
            self._records[position] = dataclasses.replace(self._records[position], **changes)

    def _take_fault(self, path: str) -> Fault | None:
        return self._faults.take(path)

    def _pullable_model(self, name: str) -> EmulatedModel | None:
        if self._pullable is None:
            return EmulatedModel.llama(name) if family_of(name) else None
        return self._pullable.get(normalize_name(name).lower())

    def _mark_loaded(self, model: EmulatedModel, num_ctx: int, keep_alive: Any) -> bool:
        """Load `model` with `num_ctx`; True when that meant a (re)load, which clears its cache."""
        seconds = keep_alive_seconds(keep_alive)
        expires = datetime.now(UTC) + timedelta(seconds=seconds if seconds >= 0 else 10**8)
        previous = self.loaded.get(model.name)
        self.loaded[model.name] = (num_ctx, expires)
        if previous is None or previous[0] != num_ctx:
            self.cache.pop(model.name, None)
            return True
        return False

    # --- routing -------------------------------------------------------------------------------

    async def _dispatch(self, request: HttpRequest, responder: Responder) -> None:
        route = (request.method, request.path)
        if route in (("GET", "/"), ("HEAD", "/")):
            self._record(method=request.method, path=request.path)
            await responder.respond(200, "text/plain; charset=utf-8", b"Ollama is running")
            return
        handlers = {
            ("GET", "/api/version"): self._version,
            ("HEAD", "/api/version"): self._version,
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/pull"): self._pull,
            ("POST", "/api/generate"): self._generate,
            ("POST", "/api/chat"): self._chat,
        }
        handler = handlers.get(route)
        if handler is None:
            self._record(method=request.method, path=request.path, status=404)
            await responder.respond(404, "text/plain", b"404 page not found")
            return
        if not self.in_flight:
            self._idle = anyio.Event()
        self.in_flight += 1
        try:
            await handler(request, responder)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _version(self, request: HttpRequest, responder: Responder) -> None:
        self._record(method=request.method, path=request.path)
        await responder.json(200, {"version": self.version})

    async def _tags(self, request: HttpRequest, responder: Responder) -> None:
        self._record(method=request.method, path=request.path)
        await responder.json(200, {"models": [m.tags_entry() for m in self._models.values()]})

    async def _ps(self, request: HttpRequest, responder: Responder) -> None:
        self._record(method=request.method, path=request.path)
        now = datetime.now(UTC)
        entries = []
        for name, (num_ctx, expires) in sorted(
            self.loaded.items(), key=lambda item: item[1][1], reverse=True
        ):
            model = self._models.get(name.lower())
            if model is None or expires < now:
                continue
            entry = {
                **{k: v for k, v in model.tags_entry().items() if k != "modified_at"},
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "size_vram": model.size,
            }
            if version_tuple(self.version) >= (0, 10):
                entry["context_length"] = num_ctx
            entries.append(entry)
        await responder.json(200, {"models": entries})

    async def _show(self, request: HttpRequest, responder: Responder) -> None:
        body = await _completion.read_body(self, request, responder)
        if body is None:
            return
        name = str(body.get("model") or body.get("name") or "")
        model = self.find_model(name)
        if model is None:
            message = f"model '{name}' not found"
            self._record(method="POST", path=request.path, body=body, status=404, error=message)
            await responder.json(404, {"error": message})
            return
        self._record(method="POST", path=request.path, body=body, model=name)
        capabilities = version_tuple(self.version) >= (0, 6, 4)
        await responder.json(200, model.show(with_capabilities=capabilities))

    async def _pull(self, request: HttpRequest, responder: Responder) -> None:
        """`POST /api/pull`: NDJSON progress, or the in-band error for an unknown model."""
        body = await _completion.read_body(self, request, responder)
        if body is None:
            return
        name = str(body.get("model") or body.get("name") or "")
        stream = body.get("stream", True) is not False
        model = self.find_model(name) or self._pullable_model(name)
        index = self._record(method="POST", path=request.path, body=body, model=name, stream=stream)
        if model is None:
            error = "pull model manifest: file does not exist"
            self._update(index, error=error, status=200 if stream else 500)
            if stream:
                await responder.start(200, NDJSON)
                await responder.write(line({"status": "pulling manifest"}))
                await responder.write(line({"error": error}))
                await responder.end()
            else:
                await responder.json(500, {"error": error})
            return
        digest = f"sha256:{model.digest}"
        statuses: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        for step in range(5):
            statuses.append(
                {
                    "status": f"pulling {model.digest[:12]}",
                    "digest": digest,
                    "total": model.size,
                    "completed": model.size * step // 4,
                }
            )
        statuses += [
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        self.add_model(model)
        self._update(index, finished=True)
        if not stream:
            await responder.json(200, statuses[-1])
            return
        await responder.start(200, NDJSON)
        for status in statuses:
            await responder.write(line(status))
            await anyio.sleep(self.latency / len(statuses))
        await responder.end()

    async def _generate(self, request: HttpRequest, responder: Responder) -> None:
        await _completion.handle(self, request, responder, endpoint="generate")

    async def _chat(self, request: HttpRequest, responder: Responder) -> None:
        await _completion.handle(self, request, responder, endpoint="chat")


def _as_model(model: str | EmulatedModel) -> EmulatedModel:
    return model if isinstance(model, EmulatedModel) else EmulatedModel.llama(model)
