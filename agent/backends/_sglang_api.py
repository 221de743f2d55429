"""SGLang's native HTTP API as `SGLangBackend` uses it (checked against SGLang's source; the
quirks and where they live are in docs/engines.md (SGLang)).

* **Requests**: `POST /generate` with the raw prompt as `text` and `sampling_params`
  (`request_body`); `POST /tokenize` for exact counts; `GET /server_info` (older servers:
  `/get_server_info`), `/model_info` (`/get_model_info`) and `/v1/models` for what the server
  runs (`Api`).
* **Streams**: server-sent events, one `data: {...}` per step and `data: [DONE]` at the end. The
  `text` of each event is the whole completion so far unless the server runs with
  `--incremental-streaming-output` (then it is the new part): `StreamAttempt` turns either into
  deltas. The end of a completion is `meta_info.finish_reason`: `{"type": "stop", "matched":
  128008}` for `<|eom_id|>` (the stop token is trimmed from `text`), `"length"`, or `"abort"`
  with a message and a status code.
* **Errors**: error statuses, in-band errors (`data: {"error": {"message": ...}}`, how a request
  rejected by the tokenizer manager looks once a stream has started) and aborts, translated
  into `agent.errors`: the boundary where foreign exceptions end.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp
import anyio
import orjson

from agent.backends._base import Done, GenerateOptions, TextChunk, Timeouts, Usage
from agent.backends._wire import (
    TRANSPORT_ERRORS,
    Connections,
    Deadline,
    Dropped,
    Expired,
    Lines,
    LineTooLong,
    transport_kind,
    unreachable_reason,
)
from agent.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextOverflowError,
    StreamError,
)
from agent.llama3 import EOM, EOT

logger = logging.getLogger("agent.backends.sglang")

T = TypeVar("T")
loads = orjson.loads

LAUNCH = "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --port 30000"
"""How to start a server, for messages."""

# Token ids of the Llama 3 vocabulary. The end tokens reach the caller as their text (so the
# loop knows eom from eot, and the next prompt holds the completion exactly as generated); a new
# header or `<|end_of_text|>` ends the completion as Ollama's Modelfile stops do.
END_TOKENS: dict[int, str] = {128008: EOM, 128009: EOT}
STOP_TOKEN_IDS = (128001, 128006, 128007, 128008, 128009)


@dataclass(frozen=True, kw_only=True)
class Caps:
    """What one generation may bring in: bytes per SSE line, characters in all."""

    line_bytes: int = 1 << 20
    completion_chars: int = 1 << 21


def request_body(
    text: str, options: GenerateOptions, *, max_new_tokens: int, stream: bool = True
) -> dict[str, Any]:
    """The `/generate` body for the raw prompt `text` (without the BOS: SGLang adds it)."""
    params: dict[str, Any] = {
        # SGLang's default is 128 tokens (`SamplingParams.max_new_tokens`): always explicit.
        "max_new_tokens": max_new_tokens,
        # Its default drops special tokens from `text`, and `<|python_tag|>` with them.
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "stop_token_ids": list(STOP_TOKEN_IDS),
    }
    for key in ("temperature", "top_p", "top_k"):
        value = getattr(options, key)
        if value is not None:
            params[key] = value
    if options.seed is not None:
        params["sampling_seed"] = options.seed
    if options.stop:
        params["stop"] = list(dict.fromkeys(options.stop))
    return {"text": text, "sampling_params": params, "stream": stream}


# --- errors ---------------------------------------------------------------------------------------


class StatusError(Exception):
    """An error status from the server, with the message its body carried."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Busy(Exception):
    """The server is full (503 or 429, or an abort with status 503 before any text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_message(body: bytes) -> str:
    """The message of an error body: `{"error": {"message"}}` (SGLang's `_create_error_response`
    and in-band errors), `{"error": "..."}` (the API-key middleware), `{"message": ...}`
    (FastAPI's validation errors as SGLang rewrites them), else the text itself."""
    try:
        payload = loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if payload.get(key) is not None:
                return str(payload[key])
    return body.decode(errors="replace").strip()[:500]


# "The input (N tokens) is longer than the model's context length (C tokens)." and "Requested
# token count exceeds the model's maximum context length of C tokens. You requested a total of
# T tokens: I tokens from the input messages and M tokens for the completion."
# (`TokenizerManager._validate_one_request`); "Input length (N tokens) exceeds the maximum
# allowed length (M tokens)" (the scheduler, when the KV pool is smaller than the context).
_INPUT_LONGER = re.compile(r"input \((\d+) tokens\) is longer than .*context length \((\d+)")
_TOTAL = re.compile(r"maximum context length of (\d+) tokens.*total of (\d+) tokens: (\d+) tokens")
_ALLOWED = re.compile(r"input length \((\d+) tokens\) exceeds the maximum allowed length \((\d+)")


def context_overflow(
    message: str, *, model: str, needed: int, available: int, prompt_tokens: int
) -> ContextOverflowError | None:
    """The context error SGLang's `message` reports, if it is one (its numbers when it gives
    them, else the backend's own)."""
    lowered = message.lower()
    if match := _TOTAL.search(lowered):
        available, needed, prompt_tokens = (int(g) for g in match.groups())
    elif match := _INPUT_LONGER.search(lowered):
        prompt_tokens, available = (int(g) for g in match.groups())
        needed = max(needed, prompt_tokens + 1)
    elif match := _ALLOWED.search(lowered):
        prompt_tokens, available = (int(g) for g in match.groups())
        needed = max(needed, prompt_tokens)
    elif "context length" not in lowered:
        return None
    return ContextOverflowError(
        needed=needed, available=available, model=model, prompt_tokens=prompt_tokens
    )


_SETTING: dict[Deadline, str] = {
    "first chunk": "first_chunk",
    "next chunk": "between_chunks",
    "total": "total",
}
_ADVICE: dict[Deadline, str] = {
    "first chunk": "SGLang may be queueing requests or prefilling a long prompt; raise "
    "Timeouts.first_chunk, or lower the backend's concurrency",
    "next chunk": "the server stalled mid-answer; check its log or raise Timeouts.between_chunks",
    "total": "the whole generation took too long; raise Timeouts.total or lower num_predict",
}


def timeout_error(
    which: Deadline, *, url: str, model: str, timeouts: Timeouts, note: str = ""
) -> BackendTimeoutError:
    """The error for a passed deadline, naming the configured limit (not what was left of it)."""
    setting = _SETTING[which]
    what = "end of the answer" if which == "total" else which
    return BackendTimeoutError(
        f"no {what} from SGLang at {url} for {model} within the deadline "
        f"(Timeouts.{setting} = {getattr(timeouts, setting)} s){note}: {_ADVICE[which]}."
    )


def transport_error(exc: BaseException, *, url: str, timeouts: Timeouts, what: str) -> BackendError:
    """A transport failure outside a stream as the project's error."""
    kind = transport_kind(exc)
    if kind == "unreachable":
        return BackendUnreachableError(
            url,
            unreachable_reason(exc),
            advice=f"Start SGLang ({LAUNCH}), or point --host at a running server.",
        )
    if kind == "connect_timeout":
        return BackendTimeoutError(
            f"connecting to SGLang at {url} took longer than {timeouts.connect} s. Check the "
            "host and the network, or raise Timeouts.connect."
        )
    return StreamError(
        f"the connection to SGLang at {url} broke during {what} ({type(exc).__name__}: {exc}). "
        "Check that the server is still running."
    )


def status_error(exc: StatusError, *, url: str, what: str) -> BackendError:
    """An error status the caller has no better translation for."""
    if exc.status == 401:
        advice = "pass the server's --api-key as api_key (or check it)"
    elif exc.status == 404:
        advice = "is this an SGLang server? Check the host and port"
    else:
        advice = "check the server log"
    return BackendResponseError(
        f"SGLang at {url} answered {exc.status} to {what}: {exc.message} ({advice}).",
        status_code=exc.status,
    )


# --- the small calls ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Clients:
    """One event loop's HTTP client (the API key rides in its default headers)."""

    session: aiohttp.ClientSession

    async def close(self) -> None:
        await self.session.close()


class Api:
    """The calls besides `/generate`, each within `Timeouts.request`, failures translated.

    What cannot change while the server runs (its version and limits) is asked once.
    """

    def __init__(self, url: str, *, timeouts: Timeouts, connections: Connections[Clients]) -> None:
        self.url = url
        self.timeouts = timeouts
        self.connections = connections
        self._server_info: dict[str, Any] | None = None
        self.has_tokenize: bool | None = None  # None: not tried yet

    async def _call(self, what: str, call: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        session = (await self.connections.current()).client.session
        try:
            with anyio.fail_after(self.timeouts.request):
                return await call(session)
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"SGLang at {self.url} did not answer {what} within {self.timeouts.request} s. "
                "Is the server overloaded? Raise Timeouts.request if it is just slow."
            ) from exc
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, url=self.url, timeouts=self.timeouts, what=what) from exc

    async def get(self, *paths: str) -> Any:
        """GET the first of `paths` the server has (newer names first); StatusError else."""
        for index, path in enumerate(paths):

            async def ask(session: aiohttp.ClientSession, path: str = path) -> tuple[int, bytes]:
                async with session.get(self.url + path) as response:
                    return response.status, await response.read()

            status, body = await self._call(f"GET {path}", ask)
            if status == 404 and index + 1 < len(paths):
                continue  # an older (or newer) server: its other name
            if status != 200:
                raise StatusError(status, error_message(body))
            return self._json(body, f"GET {path}")
        raise AssertionError("no path")  # pragma: no cover - paths is never empty

    async def post(self, path: str, payload: dict[str, Any]) -> Any:
        async def ask(session: aiohttp.ClientSession) -> tuple[int, bytes]:
            async with session.post(
                self.url + path, data=orjson.dumps(payload), headers=_JSON
            ) as response:
                return response.status, await response.read()

        status, body = await self._call(f"POST {path}", ask)
        if status != 200:
            raise StatusError(status, error_message(body))
        return self._json(body, f"POST {path}")

    def _json(self, body: bytes, what: str) -> Any:
        try:
            return loads(body)
        except orjson.JSONDecodeError:
            raise BackendResponseError(
                f"SGLang at {self.url} answered {what} with something that is not JSON "
                f"({body[:80]!r}). Does the host point at SGLang, and not at a proxy?"
            ) from None

    async def server_info(self) -> dict[str, Any]:
        """`/server_info`: server arguments, scheduler limits and `version` (asked once)."""
        if self._server_info is None:
            try:
                answer = await self.get("/server_info", "/get_server_info")
            except StatusError as exc:
                raise status_error(exc, url=self.url, what="GET /server_info") from exc
            self._server_info = answer if isinstance(answer, dict) else {}
        return self._server_info

    async def tokenize(self, text: str, *, model: str) -> int | None:
        """Tokens of `text` with the BOS SGLang adds (`/tokenize`, SGLang ≥ 0.5), or None when
        the server has no `/tokenize` (then it is not asked again)."""
        if self.has_tokenize is False:
            return None
        payload = {"model": model, "prompt": text, "add_special_tokens": True}
        try:
            answer = await self.post("/tokenize", payload)
        except StatusError as exc:
            if exc.status in (400, 404, 405, 422):
                # None, or one that does not take this request (an older or a proxied API):
                # the local count serves as well (exact with the tokenizer extra, else higher).
                logger.info(
                    "SGLang at %s: no usable /tokenize (%d: %s); counting locally",
                    self.url,
                    exc.status,
                    exc.message,
                )
                self.has_tokenize = False
                return None
            raise status_error(exc, url=self.url, what="POST /tokenize") from exc
        count = answer.get("count") if isinstance(answer, dict) else None
        if type(count) is not int:
            raise BackendResponseError(
                f"SGLang at {self.url} answered POST /tokenize without a count: {answer!r:.200}"
            )
        self.has_tokenize = True
        return count


_JSON = {"Content-Type": "application/json"}


# --- generating -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Final:
    """The end of an attempt: its `Done`, the text it produced, what the server counted."""

    done: Done
    text: str
    prompt_tokens: int | None = None  # the server's count of the prompt, if it said
    cut: bool = False  # the client ended it (past max_new_tokens or the size cap)


Mode = Literal["cumulative", "delta"]


class StreamAttempt:
    """POSTs one streamed `/generate` and yields `TextChunk`s, then one `Final`.

    Raises `StatusError` for an error status, `Busy` for a full server, `Dropped` when the
    connection broke, `BackendTimeoutError` when a deadline passed, `ContextOverflowError` for
    a prompt the server found too long, `StreamError` for an abort or an answer SGLang would
    not send. `tokens`: what the server reports as generated so far (for a resumption).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        model: str,
        body: dict[str, Any],
        timeouts: Timeouts,
        deadline: float,
        sent: int,
        context_length: int,
        caps: Caps,
        note: str = "",
    ) -> None:
        self._session = session
        self._url = url
        self._model = model
        self._body = orjson.dumps(body)
        self._max_new = int(body["sampling_params"]["max_new_tokens"])
        self._timeouts = timeouts
        self._deadline = deadline
        self._sent = sent
        self._context = context_length
        self._caps = caps
        self._note = note
        self.tokens = 0
        self._so_far = ""  # this attempt's text as the server sent it (cumulative mode)
        self._mode: Mode | None = None

    def _timeout(self, which: Deadline) -> BackendTimeoutError:
        return timeout_error(
            which, url=self._url, model=self._model, timeouts=self._timeouts, note=self._note
        )

    def _garbled(self, what: str) -> StreamError:
        return StreamError(
            f"the stream from {self._url} for {self._model} contained {what}. Does the host "
            "point at SGLang, and not at a proxy or another service?"
        )

    def _overflow(self, message: str) -> ContextOverflowError | None:
        return context_overflow(
            message,
            model=self._model,
            needed=self._sent + self._max_new,
            available=self._context,
            prompt_tokens=self._sent,
        )

    async def events(self) -> AsyncGenerator[TextChunk | Final, None]:
        total_at = self._deadline
        first = self._timeouts.first_chunk
        first_at = total_at if first is None else min(anyio.current_time() + first, total_at)
        with anyio.CancelScope(deadline=first_at) as scope:
            try:
                response = await self._session.post(
                    self._url + "/generate", data=self._body, headers=_JSON
                )
            except TRANSPORT_ERRORS as exc:
                raise self._transport_error(exc) from exc
        if scope.cancelled_caught:
            raise self._timeout("first chunk" if first_at < total_at else "total")
        lines: Lines | None = None
        try:
            if response.status != 200:
                body = await response.content.read(self._caps.line_bytes)
                if response.content.at_eof():
                    response.release()  # a 503 is retried: keep the connection for it
                message = error_message(body)
                if response.status in (429, 503):
                    raise Busy(f"{response.status}: {message}")
                if response.status == 400 and (overflow := self._overflow(message)):
                    raise overflow
                raise StatusError(response.status, message)
            lines = Lines(
                response.content,
                first_at=first_at,
                between=self._timeouts.between_chunks,
                total_at=total_at,
                max_line=self._caps.line_bytes,
            )
            chars = 0
            pieces: list[str] = []
            while True:
                try:
                    batch = await lines.batch()
                except Expired as exc:
                    raise self._timeout(exc.which) from None
                except LineTooLong as exc:
                    raise self._garbled(f"a line longer than {exc.limit} bytes") from None
                except TRANSPORT_ERRORS as exc:
                    raise self._transport_error(exc) from exc
                if not batch:
                    raise Dropped("the stream ended without its finish_reason")
                for raw in batch:
                    event = self._event(raw)
                    if event is None:
                        continue
                    meta = event.get("meta_info")
                    meta = meta if type(meta) is dict else {}
                    tokens = meta.get("completion_tokens")
                    self.tokens = tokens if type(tokens) is int else self.tokens + 1
                    text = self._delta(event.get("text"), event.get("output_ids"))
                    if text:
                        chars += len(text)
                        if self.tokens > self._max_new or chars > self._caps.completion_chars:
                            yield self._cut(pieces)
                            return
                        pieces.append(text)
                        yield TextChunk(text=text)
                    finish = meta.get("finish_reason")
                    if finish is None:
                        continue
                    final = self._finish(finish, meta, pieces)
                    matched = finish.get("matched") if type(finish) is dict else None
                    end = END_TOKENS.get(matched) if type(matched) is int else None
                    if end is not None:
                        yield TextChunk(text=end)
                    if await lines.drain():
                        response.release()  # the connection serves the next request
                    yield final
                    return
        finally:
            if lines is not None:
                lines.close()
            response.close()  # a no-op after release(); else what stops the generation

    def _event(self, raw: bytes) -> dict[str, Any] | None:
        """The JSON object of one SSE line; None for what carries none (blank, comment, field);
        raises at `[DONE]` before the finish, or for an in-band error."""
        line = raw.rstrip(b"\r")
        if not line or line.startswith(b":"):
            return None
        if not line.startswith(b"data:"):
            if line.startswith((b"event:", b"id:", b"retry:")):
                return None
            raise self._garbled(f"a line that is not a server-sent event: {line[:80]!r}")
        data = line[5:].strip()
        if data == b"[DONE]":
            raise StreamError(
                f"the stream from SGLang at {self._url} for {self._model} ended ([DONE]) "
                "without a finish_reason. Check the server log."
            )
        try:
            event = loads(data)
        except orjson.JSONDecodeError as exc:
            raise self._garbled(f"an event that is not JSON ({exc})") from None
        if type(event) is not dict:
            raise self._garbled(f"an event that is not a JSON object: {data[:80]!r}")
        if "error" in event:
            message = error_message(data)
            if overflow := self._overflow(message):
                raise overflow
            raise StreamError(
                f"SGLang at {self._url} rejected the request for {self._model}: {message}. "
                "Check the options sent (and the server log)."
            )
        return event

    def _delta(self, text: Any, ids: Any) -> str:
        """The new text an event carries, in either streaming mode (see the module docstring).

        An event whose text does not start with the text so far is a delta. When it does, and
        the mode is not known yet, its `output_ids` decide: all the tokens so far in the
        cumulative mode, the new ones only in the incremental one.
        """
        if text is None:
            return ""
        if type(text) is not str:
            raise self._garbled(f"a text that is not a string: {str(text)[:80]!r}")
        so_far = self._so_far
        if self._mode == "delta":
            return text
        if so_far and self._mode is None and type(ids) is list and len(ids) < self.tokens:
            self._mode = "delta"
            return text
        if text.startswith(so_far):
            if so_far:
                self._mode = "cumulative"
            self._so_far = text
            return text[len(so_far) :]
        if self._mode == "cumulative" and so_far.startswith(text):
            return ""  # the last event trims a stop string already sent: it cannot be taken back
        self._mode = "delta"  # `--incremental-streaming-output`
        return text

    def _usage(self, meta: dict[str, Any], eval_count: int | None = None) -> Usage:
        prompt = _int(meta.get("prompt_tokens"))
        cached = _int(meta.get("cached_tokens"))
        latency = meta.get("e2e_latency")
        seconds = float(latency) if isinstance(latency, int | float) else 0.0
        return Usage(
            # Ollama's sense: the prompt tokens evaluated, those from the prefix cache not counted.
            prompt_eval_count=max(prompt - cached, 0),
            cached_tokens=cached,
            eval_count=self.tokens if eval_count is None else eval_count,
            total_duration=int(seconds * 1e9),
            prompt_tokens_sent=self._sent,
            num_ctx=self._context,
        )

    def _finish(self, finish: Any, meta: dict[str, Any], pieces: list[str]) -> Final:
        kind = finish.get("type") if type(finish) is dict else None
        text = "".join(pieces)
        if kind == "abort":
            message = str(finish.get("message") or "Aborted")
            if overflow := self._overflow(message):
                raise overflow
            if finish.get("status_code") in (429, 503) and not pieces:
                raise Busy(f"abort {finish.get('status_code')}: {message}")
            after = f" after {len(text)} characters" if text else ""
            raise StreamError(
                f"SGLang at {self._url} aborted the generation for {self._model}{after}: "
                f"{message}. Check the server log (an operator's /abort_request, memory "
                "pressure or a restart end requests this way)."
            )
        if kind not in ("stop", "length"):
            raise self._garbled(f"a finish_reason SGLang would not send: {finish!r:.80}")
        prompt = meta.get("prompt_tokens")
        return Final(
            done=Done(done_reason=kind, usage=self._usage(meta)),
            text=text,
            prompt_tokens=prompt if type(prompt) is int else None,
        )

    def _cut(self, pieces: list[str]) -> Final:
        """The end of an attempt the client stopped: past `max_new_tokens` or the size cap."""
        past = "its max_new_tokens" if self.tokens > self._max_new else "the size cap"
        note = (
            f"SGLang at {self._url} went on generating for {self._model} past {past} "
            f"({self.tokens} tokens, {self._caps.completion_chars} characters at most); the "
            "answer was cut there"
        )
        logger.warning("%s", note)
        tokens = min(self.tokens, self._max_new)
        done = Done(done_reason="length", usage=self._usage({}, tokens), warnings=(note,))
        return Final(done=done, text="".join(pieces), cut=True)

    def _transport_error(self, exc: Exception) -> Exception:
        kind = transport_kind(exc)
        if kind == "dropped":
            return Dropped(f"{type(exc).__name__}: {exc}")
        if kind == "read_timeout":
            return self._timeout("next chunk")
        return transport_error(exc, url=self._url, timeouts=self._timeouts, what="generate")


def _int(value: Any) -> int:
    return value if type(value) is int else 0
