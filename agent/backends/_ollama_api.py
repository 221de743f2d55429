"""Ollama's HTTP API as the backend uses it: generating on aiohttp directly, the rest through
the official `ollama.AsyncClient`.

* **Requests**: each request's `options` (`wire_options`); the host is `_host.parse_host`'s.
* **Errors**: Ollama's error statuses, in-band error lines and unreadable answers translated
  into `agent.errors` (`response_error`, `Server.translate_other`): with `_wire`'s
  classification of transport failures, the one boundary where foreign exceptions end.
* **Generating**: one streamed `/api/generate` in raw mode, on one HTTP stack (aiohttp, orjson,
  no model per chunk), under deadlines and size caps (`StreamAttempt`, `_stream.Lines`);
  `OllamaBackend` decides about retries and resumption.
* **The rest of the API** (`Server`): `/api/version`, `/api/show`, `/api/ps`, and `/api/pull`
  with its progress.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import anyio
import ollama
import orjson
import pydantic

from agent._frozen import stored_at_once
from agent.backends._base import (
    Done,
    DoneReason,
    GenerateOptions,
    ModelInfo,
    Timeouts,
    Usage,
)
from agent.backends._context import describe
from agent.backends._wire import (
    TRANSPORT_ERRORS,
    Connections,
    Deadline,
    Dropped,
    Expired,
    Lines,
    LineTooLong,
    closing_iterator,
    transport_kind,
    unreachable_reason,
)
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    ContextOverflowError,
    ModelCapabilityError,
    ModelNotFoundError,
    OllamaUnreachableError,
    StreamError,
)

logger = logging.getLogger("agent.backends.ollama")

T = TypeVar("T")
loads = orjson.loads


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PullProgress:
    """One progress line of `ollama pull`: a status, and byte counts while a layer downloads."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the current layer downloaded (0..1), if known."""
        if not self.total or self.completed is None:
            return None
        return min(self.completed / self.total, 1.0)


# The published llama3.x Modelfiles' stops (PROTOCOL.md §1.7), and `<|eom_id|>`: an end of
# generation in every Ollama since 0.3.10, but printed as text by 0.3.0-0.3.9 (§1.5).
LLAMA3_STOPS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>")


def wire_options(options: GenerateOptions, *, num_ctx: int, num_predict: int) -> dict[str, Any]:
    """The request's `options`: sizes from the backend, sampling from the caller."""
    wire: dict[str, Any] = {"num_ctx": num_ctx, "num_predict": num_predict}
    for key in ("temperature", "seed", "top_p", "top_k"):
        value = getattr(options, key)
        if value is not None:
            wire[key] = value
    if options.stop:
        # A stop list replaces the Modelfile's on the server (§1.2), so Llama 3's own stops are
        # added back: without them a model that writes a new header runs on into a fake turn.
        stops = list(dict.fromkeys(options.stop))
        wire["stop"] = stops + [s for s in LLAMA3_STOPS if s not in stops]
    return wire


# --- errors ---------------------------------------------------------------------------------------

UNREADABLE_ERRORS: tuple[type[Exception], ...] = (json.JSONDecodeError, pydantic.ValidationError)
"""What an answer that is not Ollama's JSON raises inside the client."""

FOREIGN_ERRORS = TRANSPORT_ERRORS + UNREADABLE_ERRORS
"""Everything the backend translates besides `ollama.ResponseError`; the rest propagates."""


def response_error(
    exc: ollama.ResponseError, *, model: str, url: str, needed: int = 0, available: int = 0
) -> BackendError:
    """Translate an error status (or an in-band error line, status -1) into the project's errors."""
    message = str(exc.error)
    status = exc.status_code
    lowered = message.lower()
    if status == -1:
        return StreamError(
            f"Ollama reported an error in the middle of the stream for {model}: {message}. "
            "This usually means the model runner crashed or ran out of memory; check "
            "`ollama ps` and the server log, then try again."
        )
    if status == 404 and "not found" in lowered:
        return ModelNotFoundError(model, url)
    if status == 400 and "does not support" in lowered:
        return ModelCapabilityError(
            f"{message}. Use a model that can do this (for tool use: llama3.1, llama3.2 or "
            "llama3.3 from the Ollama library)."
        )
    if status == 400 and "context length" in lowered:
        return ContextOverflowError(needed=needed, available=available, model=model)
    return BackendResponseError(
        f"Ollama at {url} answered {status} for {model}: {message}", status_code=status
    )


def unreadable(exc: BaseException, *, model: str, url: str) -> StreamError | None:
    """A stream line that is not JSON, or not shaped like Ollama's."""
    if isinstance(exc, json.JSONDecodeError):
        return StreamError(
            f"the stream from {url} for {model} contained a line that is not JSON ({exc.msg}). "
            "Is OLLAMA_HOST pointing at Ollama, and not at a proxy or another service?"
        )
    if isinstance(exc, pydantic.ValidationError):
        return StreamError(
            f"the stream from {url} for {model} contained a line Ollama would not send: {exc}"
        )
    return None


_SETTING: dict[Deadline, str] = {
    "first chunk": "first_chunk",
    "next chunk": "between_chunks",
    "total": "total",
}
_ADVICE: dict[Deadline, str] = {
    "first chunk": "Ollama may be loading the model or queueing requests; raise "
    "Timeouts.first_chunk, or lower the backend's concurrency",
    "next chunk": "the server stalled mid-answer; check it (`ollama ps`) or raise "
    "Timeouts.between_chunks",
    "total": "the whole generation took too long; raise Timeouts.total or lower num_predict",
}


def timeout_error(
    which: Deadline, *, url: str, model: str, timeouts: Timeouts, note: str = ""
) -> BackendTimeoutError:
    """The error for a passed deadline, naming the configured limit (not what was left of it)."""
    setting = _SETTING[which]
    what = "end of the answer" if which == "total" else which
    return BackendTimeoutError(
        f"no {what} from Ollama at {url} for {model} within the deadline "
        f"(Timeouts.{setting} = {getattr(timeouts, setting)} s){note}: {_ADVICE[which]}."
    )


# --- generating -----------------------------------------------------------------------------------


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class Final:
    """The final line of an attempt, with the text that attempt produced."""

    done: Done
    text: str
    cut: bool = False  # the client ended it (past num_predict or the size cap): no final line


@dataclass(frozen=True, kw_only=True)
class Caps:
    """What one generation may bring in: bytes per NDJSON line, characters in all."""

    line_bytes: int = 1 << 20
    completion_chars: int = 1 << 21


_DONE_REASONS: dict[str, DoneReason] = {"stop": "stop", "length": "length", "unload": "unload"}
_JSON = {"Content-Type": "application/json"}
_USAGE_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class StreamAttempt:
    """One raw, streamed `/api/generate`: `open()` POSTs it, then the caller reads
    `lines.batch()` and hands each batch to `take()` until `ended`, then `release()`s the
    connection, and `end()` gives the `Final`.

    The hot path: aiohttp and orjson directly, one `await` per network read (`_wire.Lines`), a
    dict per line and no model. It is driven from the backend's own generator rather than being
    one: every generator between the socket and the loop costs every read, so there is one. The
    lines that arrived together are joined into one text (`chunks` counts the tokens handed
    over). `open()` and `end()` raise `ollama.ResponseError` for an error status or an in-band
    error line (the caller decides about 503), `Dropped` when the connection broke,
    `BackendTimeoutError` when a deadline passed, `StreamError` for an answer Ollama would not
    send (`read_error()` words what `lines.batch()` raised). More than `num_predict` tokens (a
    line is a token), or more text than the caps allow, ends the attempt as `length` whatever
    the server does. `close()` always, at the end: it stops the generation if it still runs.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        model: str,
        prompt: str,
        options: dict[str, Any],
        keep_alive: str | float | None,
        timeouts: Timeouts,
        deadline: float,
        sent: int,
        num_ctx: int,
        caps: Caps,
        translate_other: Callable[..., BackendError],
        note: str = "",
    ) -> None:
        self._session = session
        self.chunks = 0
        """Tokens (NDJSON lines with text) taken so far: a text handed over may hold several."""
        self.ended = False
        """`take()` met the end: the final line, an error, or a cap (then call `end()`)."""
        self._note = note  # what came before this attempt, for a timeout's message
        self._url = url
        self._model = model
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            "options": options,
        }
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        self._body = orjson.dumps(body)
        num_predict = int(options.get("num_predict", -1))
        self._num_predict = num_predict
        self._limit = num_predict if num_predict >= 0 else float("inf")
        self._timeouts = timeouts
        self._deadline = deadline
        self._sent = sent
        self._num_ctx = num_ctx
        self._caps = caps
        self._translate_other = translate_other
        self._response: aiohttp.ClientResponse | None = None
        self._lines: Lines | None = None
        self._pieces: list[str] = []  # this attempt's text, a token each
        self._chars = 0
        self._final: Final | None = None
        self._final_line = False  # the final came as Ollama's last line (the body may end)
        self._failure: Exception | None = None

    def _timeout(self, which: Deadline) -> BackendTimeoutError:
        return timeout_error(
            which, url=self._url, model=self._model, timeouts=self._timeouts, note=self._note
        )

    def _garbled(self, what: str) -> StreamError:
        return StreamError(
            f"the stream from {self._url} for {self._model} contained {what}. "
            "Is OLLAMA_HOST pointing at Ollama, and not at a proxy or another service?"
        )

    async def open(self) -> Lines:
        """Send the request; the lines of a 200 answer (else `ollama.ResponseError`)."""
        total_at = self._deadline
        first = self._timeouts.first_chunk
        first_at = total_at if first is None else min(anyio.current_time() + first, total_at)
        with anyio.CancelScope(deadline=first_at) as scope:
            try:
                response = await self._session.post(
                    self._url + "/api/generate", data=self._body, headers=_JSON
                )
            except TRANSPORT_ERRORS as exc:
                raise self._transport_error(exc) from exc
        if scope.cancelled_caught:
            raise self._timeout("first chunk" if first_at < total_at else "total")
        self._response = response
        if response.status != 200:
            body = await response.content.read(self._caps.line_bytes)
            if response.content.at_eof():
                response.release()  # a 503 is retried: keep the connection for it
            raise ollama.ResponseError(body.decode(errors="replace"), response.status)
        self._lines = Lines(
            response.content,
            first_at=first_at,
            between=self._timeouts.between_chunks,
            total_at=total_at,
            max_line=self._caps.line_bytes,
        )
        return self._lines

    def read_error(self, exc: Exception) -> Exception:
        """What to raise for what `lines.batch()` raised (its cause set as `raise` would)."""
        error: Exception
        if isinstance(exc, Expired):
            error = self._timeout(exc.which)
        elif isinstance(exc, LineTooLong):
            error = self._garbled(f"a line longer than {exc.limit} bytes")
        else:
            error = self._transport_error(exc)
            error.__cause__ = exc
            return error
        error.__suppress_context__ = True  # `from None`: the wording says it all
        return error

    def take(self, batch: list[bytes]) -> str:
        """The text of the lines that came in one read (maybe ""); sets `ended` at the end.

        The text before an error line is handed over too, as it would have been token by token
        (a resumed stream continues from all of it).
        """
        if not batch:
            self._failure = Dropped("the stream ended without its final line")
            self.ended = True
            return ""
        pieces = self._pieces
        shown = len(pieces)
        for raw in batch:
            if not raw:
                continue
            try:
                part = loads(raw)
            except orjson.JSONDecodeError as exc:
                self._failure = self._garbled(f"a line that is not JSON ({exc})")
                break
            if type(part) is not dict:
                self._failure = self._garbled(f"a line that is not a JSON object: {raw[:80]!r}")
                break
            text = part.get("response")
            if part.get("done") is True:
                self._final = Final(done=self._done(part), text="".join(pieces))
                self._final_line = True
                break
            if "error" in part:
                self._failure = ollama.ResponseError(str(part["error"]), -1)
                break
            if not text:
                continue
            if type(text) is not str:
                self._failure = self._garbled(f"a response that is not text: {raw[:80]!r}")
                break
            self._chars += len(text)
            if len(pieces) >= self._limit or self._chars > self._caps.completion_chars:
                self._final = Final(done=self._cut(len(pieces)), text="".join(pieces), cut=True)
                break
            pieces.append(text)
        self.ended = self._final is not None or self._failure is not None
        if len(pieces) == shown:
            return ""
        self.chunks = len(pieces)
        return "".join(pieces[shown:])

    async def release(self) -> None:
        """After Ollama's final line: read the rest of the body, and give the connection back
        for the next request when it ended cleanly."""
        if self._final_line and self._lines is not None and await self._lines.drain():
            assert self._response is not None
            self._response.release()

    def end(self) -> Final:
        """The attempt's `Final` once `take()` set `ended`, or what ended it, raised."""
        if self._failure is not None:
            raise self._failure
        assert self._final is not None
        return self._final

    def close(self) -> None:
        """Stop the timer, and the generation if the body was not read to its end."""
        if self._lines is not None:
            self._lines.close()
        if self._response is not None:
            self._response.close()  # a no-op after release(); else what stops the generation

    def _transport_error(self, exc: Exception) -> Exception:
        kind = transport_kind(exc)
        if kind == "dropped":
            return Dropped(f"{type(exc).__name__}: {exc}")
        if kind == "read_timeout":
            return self._timeout("next chunk")
        return self._translate_other(exc, model=self._model, what="generate")

    def _usage(self, part: dict[str, Any] | None = None, *, eval_count: int = 0) -> Usage:
        values = {key: 0 for key in _USAGE_FIELDS}
        values["eval_count"] = eval_count
        for key in _USAGE_FIELDS if part is not None else ():
            value = part.get(key)  # type: ignore[union-attr]
            if type(value) is int:
                values[key] = value
        return Usage(**values, prompt_tokens_sent=self._sent, num_ctx=self._num_ctx)

    def _done(self, part: dict[str, Any]) -> Done:
        reason = part.get("done_reason")
        done_reason = _DONE_REASONS.get(reason, "other") if type(reason) is str else "other"
        return Done(done_reason=done_reason, usage=self._usage(part))

    def _cut(self, chunks: int) -> Done:
        """The end of an attempt the client stopped: past `num_predict` or the size cap."""
        past = "its num_predict" if chunks >= self._num_predict >= 0 else "the size cap"
        note = (
            f"Ollama at {self._url} went on generating for {self._model} past {past} "
            f"({chunks} chunks, {self._caps.completion_chars} characters at most); the answer "
            "was cut there"
        )
        logger.warning("%s", note)
        return Done(done_reason="length", usage=self._usage(eval_count=chunks), warnings=(note,))


# --- the rest of the API --------------------------------------------------------------------------

PullCallback = Callable[[PullProgress], None]


@dataclass(frozen=True, kw_only=True)
class Clients:
    """One event loop's clients: aiohttp for generating and small JSON calls, the `ollama`
    client for what it does well (`show`, `ps`, `pull` with progress)."""

    session: aiohttp.ClientSession
    ollama: ollama.AsyncClient
    owns_transport: bool = True  # False: the caller's httpx transport, shared by every loop

    async def close(self) -> None:
        await self.session.close()
        if self.owns_transport:
            await self.ollama.close()  # type: ignore[no-untyped-call]


class Server:
    """One Ollama server as the backend sees it: its version, its models, what it has loaded.

    Answers that cannot change while the server runs are asked once and kept.
    """

    def __init__(
        self,
        url: str,
        *,
        timeouts: Timeouts,
        connections: Connections[Clients],
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

    async def small(self, what: str, model: str, call: Callable[[Clients], Awaitable[T]]) -> T:
        """`call(clients)` within `Timeouts.request`, its failures translated."""
        clients = (await self.connections.current()).client
        try:
            with anyio.fail_after(self.timeouts.request):
                return await call(clients)
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
            # The `ollama` client has no version() method (PROTOCOL.md §4).
            async def ask(clients: Clients) -> Any:
                async with clients.session.get(self.url + "/api/version") as response:
                    body = await response.read()
                if response.status != 200:
                    raise ollama.ResponseError(body.decode(errors="replace"), response.status)
                return loads(body)

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
                show = await self.small("POST /api/show", model, lambda c: c.ollama.show(model))
            except ModelNotFoundError:
                if not self.pull_missing:
                    raise
                await self._pull_logged(model)
                show = await self.small("POST /api/show", model, lambda c: c.ollama.show(model))
            info = describe(
                model,
                model_info=show.modelinfo or {},
                capabilities=tuple(show.capabilities or ()),
                server_version=await self.version(),
            )
            self.info[model] = info
            return info

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Pull `model`, yielding Ollama's progress lines; ends after `status == "success"`.

        `Timeouts.between_chunks` bounds the wait for each progress line.
        """
        client = (await self.connections.current()).client.ollama
        between_chunks = self.timeouts.between_chunks
        stream = await client.pull(model, stream=True)
        async with closing_iterator(stream):
            while True:
                try:
                    with anyio.fail_after(between_chunks):
                        part = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise BackendTimeoutError(
                        f"pulling {model} from {self.url}: no progress for {between_chunks} s"
                    ) from exc
                except ollama.ResponseError as exc:
                    raise BackendResponseError(
                        f"Ollama at {self.url} could not pull '{model}': {exc.error}. Check the "
                        "name and tag against the Ollama library.",
                        status_code=exc.status_code,
                    ) from exc
                except FOREIGN_ERRORS as exc:
                    raise self.translate_other(exc, model=model, what="pull") from exc
                yield PullProgress(
                    status=str(part.status or ""),
                    digest=part.digest,
                    total=part.total,
                    completed=part.completed,
                )

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
            loaded = await self.small("GET /api/ps", model, lambda c: c.ollama.ps())
        except BackendError:
            return None
        wanted = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        for entry in loaded.models:
            if (entry.model or entry.name or "").lower() == wanted.lower():
                context: int | None = entry.context_length
                return context
        return None
