"""llama.cpp's `llama-server` as `LlamaCppBackend` uses it: the native `/completion` stream, the
small calls (`/props`, `/v1/models`, `/tokenize`) and its errors.

Checked against llama.cpp's `tools/server` (the sources vendored by llama-cpp-python 0.3.36,
llama.cpp 0.5.0-dev; docs/engines.md (llama.cpp) cites the functions):

* A streamed `/completion` is SSE: `data: {...}` events, `:` pings, no `data: [DONE]` (that is
  only for the OpenAI routes). Each event before the last carries one sampled token: `content`
  (its text, plus any text held back while it could have begun a stop word) and `tokens` (its
  id). The last has `stop: true`, empty `content`, and `stop_type`, `stopping_word`,
  `tokens_cached`, `timings`.
* Special tokens are rendered as empty text unless the server runs with `--special`: the text of
  `<|python_tag|>`, `<|eom_id|>`, `<|eot_id|>` is put back from the token id (`special_text`),
  unless the content already ends with it (`--special`). `<|eom_id|>` and `<|eot_id|>` both end
  with `stop_type: "eos"`; the id tells them apart, and the end token's text ends the completion
  (the loop reads the stop reason from it, and the next prompt repeats it byte for byte).
* The server closes the connection after each stream (server-http.cpp
  `process_handler_response`: the chunked content provider returns false after
  `sink.done()`, which cpp-httplib treats as the end of the connection), with no
  `Connection: close` header: aiohttp would pool the connection once the body ended and the
  next request would find it dead, so each stream is sent with `Connection: close`.
* An error before the first token is a plain JSON answer with an error status (`{"error":
  {"code", "message", "type"}}`, plus `n_prompt_tokens` and `n_ctx` for
  `exceed_context_size_error`); later, an SSE event `{"error": {...}}`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson

from agent.backends._base import Done, DoneReason, GenerateOptions, TextChunk, Timeouts, Usage
from agent.backends._ollama_api import Caps
from agent.backends._wire import (
    TRANSPORT_ERRORS,
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
from agent.llama3 import END_HEADER, EOM, EOT, SPECIAL_TOKENS, START_HEADER

logger = logging.getLogger("agent.backends.llamacpp")

loads = orjson.loads
FIRST_SPECIAL = 128000
SPECIAL_BY_ID: dict[int, str] = {FIRST_SPECIAL + i: t for i, t in enumerate(SPECIAL_TOKENS)}
"""The text of each Llama 3 special token, by id."""
END_TOKENS = frozenset({EOM, EOT, "<|end_of_text|>"})
HEADER_STOPS = frozenset({START_HEADER, END_HEADER})
"""A header the model writes starts a fake turn: the stream ends there, as Ollama's Llama 3
stops do (llama-server has no stop on them: they are not end-of-generation tokens)."""

_JSON = {"Content-Type": "application/json"}
# The stream's connection is not reused (see the module docstring). A 503 then costs a new
# connection too; on 127.0.0.1 or a LAN that is well under a millisecond.
_STREAM = {**_JSON, "Connection": "close"}
_DONE_REASONS: dict[str, DoneReason] = {"eos": "stop", "word": "stop", "limit": "length"}


def special_text(content: str, tokens: Any) -> tuple[str, str | None]:
    """The event's text before its special token, and that token's text (None if it has none).

    The token is the last of the event: held-back text comes out with the token that released
    it, before it. With `--special` the server already wrote the token's text: it is split off
    here, so the caller appends it exactly once either way.
    """
    if type(tokens) is not list or not tokens:
        return content, None
    special = SPECIAL_BY_ID.get(tokens[-1])
    if special is None:
        return content, None
    if content.endswith(special):
        return content[: -len(special)], special
    return content, special


def request_body(
    *, model: str, prompt: str, options: GenerateOptions, n_predict: int
) -> dict[str, Any]:
    """The `/completion` request: sizes from the backend, sampling from the caller."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "model": model,  # ignored by a single-model server; a router (`--models-dir`) routes by it
        "n_predict": n_predict,  # always explicit: the server's default is -1, unbounded
        "stream": True,
        "cache_prompt": True,  # reuse the slot's KV cache for the common prefix
        "return_tokens": True,  # each event's token ids (older servers send them only then)
    }
    for key in ("temperature", "seed", "top_p", "top_k"):
        value = getattr(options, key)
        if value is not None:
            body[key] = value
    if options.stop:
        body["stop"] = list(dict.fromkeys(options.stop))
    return body


# --- errors ---------------------------------------------------------------------------------------


class ServerAnswer(Exception):
    """An error status (or an in-stream error event, status -1) with llama-server's body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.error: dict[str, Any] = {}
        self.message = body.decode(errors="replace").strip()
        try:
            parsed = loads(body)
        except orjson.JSONDecodeError:
            return
        error = parsed.get("error") if type(parsed) is dict else None
        if type(error) is dict:
            self.error = error
            self.message = str(error.get("message", self.message))
        elif type(error) is str:
            self.message = error


def answer_error(exc: ServerAnswer, *, model: str, url: str) -> BackendError:
    """llama-server's error answer as the project's error (not 503: the backend retries it)."""
    error, status = exc.error, exc.status
    if error.get("type") == "exceed_context_size_error":
        prompt, n_ctx = error.get("n_prompt_tokens"), error.get("n_ctx")
        if type(prompt) is int and type(n_ctx) is int:
            return ContextOverflowError(needed=prompt, available=n_ctx, model=model)
    if status == -1:
        return StreamError(
            f"llama-server at {url} reported an error in the middle of the stream for {model}: "
            f"{exc.message}. Check the server's log, then try again."
        )
    if status == 401:
        return BackendResponseError(
            f"llama-server at {url} refused the request ({exc.message}): give the backend the "
            "key the server was started with (`--api-key`) as api_key=...",
            status_code=status,
        )
    if status == 404:
        return BackendResponseError(
            f"llama-server at {url} has no such endpoint ({exc.message}): is the host a "
            "llama.cpp llama-server (and not Ollama, or a proxy)?",
            status_code=status,
        )
    return BackendResponseError(
        f"llama-server at {url} answered {status} for {model}: {exc.message}", status_code=status
    )


def transport_error(exc: BaseException, *, url: str, timeouts: Timeouts, what: str) -> BackendError:
    """A transport failure as the project's error (a dropped stream is the caller's)."""
    kind = transport_kind(exc)
    if kind == "unreachable":
        return BackendUnreachableError(
            url,
            unreachable_reason(exc),
            advice="Start it (`llama-server -m MODEL.gguf --port PORT`), or point --host at a "
            "running llama-server.",
        )
    if kind == "connect_timeout":
        return BackendTimeoutError(
            f"connecting to llama-server at {url} took longer than {timeouts.connect} s. "
            "Check the host and the network, or raise Timeouts.connect."
        )
    return StreamError(
        f"the connection to llama-server at {url} broke during {what} ({exc}). Check that the "
        "server is still running."
    )


_SETTING: dict[Deadline, str] = {
    "first chunk": "first_chunk",
    "next chunk": "between_chunks",
    "total": "total",
}
_ADVICE: dict[Deadline, str] = {
    "first chunk": "llama-server may be busy with other slots or evaluating a long prompt; "
    "raise Timeouts.first_chunk, or lower the backend's concurrency to the server's slots (-np)",
    "next chunk": "the server stalled mid-answer; check it (its log, /slots) or raise "
    "Timeouts.between_chunks",
    "total": "the whole generation took too long; raise Timeouts.total or lower num_predict",
}


def timeout_error(
    which: Deadline, *, url: str, model: str, timeouts: Timeouts, note: str = ""
) -> BackendTimeoutError:
    """The error for a passed deadline, naming the configured limit."""
    setting = _SETTING[which]
    what = "end of the answer" if which == "total" else which
    return BackendTimeoutError(
        f"no {what} from llama-server at {url} for {model} within the deadline "
        f"(Timeouts.{setting} = {getattr(timeouts, setting)} s){note}: {_ADVICE[which]}."
    )


# --- generating -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Final:
    """The end of an attempt, with the text that attempt produced."""

    done: Done
    text: str


class Attempt:
    """POSTs one streamed `/completion` and yields `TextChunk`s, then one `Final`.

    Raises `ServerAnswer` for an error status or error event, `Dropped` when the connection
    broke, `BackendTimeoutError` when a deadline passed, `StreamError` for an answer
    llama-server would not send. More tokens than `n_predict`, or more text than the caps
    allow, end the attempt as `length` whatever the server does.
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
        num_ctx: int,
        caps: Caps,
        note: str = "",
    ) -> None:
        self._session = session
        self._url = url
        self._model = model
        self._body = orjson.dumps(body)
        self._n_predict = int(body["n_predict"])
        self._timeouts = timeouts
        self._deadline = deadline
        self._sent = sent
        self._num_ctx = num_ctx
        self._caps = caps
        self._note = note
        self.tokens = 0  # generated so far in this attempt

    def _timeout(self, which: Deadline) -> BackendTimeoutError:
        return timeout_error(
            which, url=self._url, model=self._model, timeouts=self._timeouts, note=self._note
        )

    def _garbled(self, what: str) -> StreamError:
        return StreamError(
            f"the stream from {self._url} for {self._model} contained {what}. Is the host a "
            "llama.cpp llama-server, and not a proxy or another service?"
        )

    async def events(self) -> AsyncGenerator[TextChunk | Final, None]:
        total_at = self._deadline
        first = self._timeouts.first_chunk
        first_at = total_at if first is None else min(anyio.current_time() + first, total_at)
        with anyio.CancelScope(deadline=first_at) as scope:
            try:
                response = await self._session.post(
                    self._url + "/completion", data=self._body, headers=_STREAM
                )
            except TRANSPORT_ERRORS as exc:
                raise self._transport(exc) from exc
        if scope.cancelled_caught:
            raise self._timeout("first chunk" if first_at < total_at else "total")
        lines: Lines | None = None
        try:
            if response.status != 200:
                body = await response.content.read(self._caps.line_bytes)
                raise ServerAnswer(response.status, body)
            lines = Lines(
                response.content,
                first_at=first_at,
                between=self._timeouts.between_chunks,
                total_at=total_at,
                max_line=self._caps.line_bytes,
            )
            pieces: list[str] = []
            chars = 0
            while True:
                try:
                    batch = await lines.batch()
                except Expired as exc:
                    raise self._timeout(exc.which) from None
                except LineTooLong as exc:
                    raise self._garbled(f"a line longer than {exc.limit} bytes") from None
                except TRANSPORT_ERRORS as exc:
                    raise self._transport(exc) from exc
                if not batch:
                    raise Dropped("the stream ended without its final event")
                for raw in batch:
                    if not raw.startswith(b"data:"):
                        if raw.strip() and not raw.startswith(b":"):  # `:` is a ping
                            raise self._garbled(f"a line that is not an SSE event: {raw[:80]!r}")
                        continue
                    data = raw[5:].strip()
                    if data == b"[DONE]":
                        raise self._garbled("[DONE] before the final event")
                    try:
                        part = loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise self._garbled(f"an event that is not JSON ({exc})") from None
                    if type(part) is not dict:
                        raise self._garbled(f"an event that is not a JSON object: {raw[:80]!r}")
                    if "error" in part:
                        raise ServerAnswer(-1, orjson.dumps(part))
                    if part.get("stop") is True:
                        yield Final(done=self._done(part), text="".join(pieces))
                        return
                    content = part.get("content", "")
                    if type(content) is not str:
                        raise self._garbled(f"a content that is not text: {raw[:80]!r}")
                    tokens = part.get("tokens")
                    self.tokens += len(tokens) if type(tokens) is list else 1
                    text, special = special_text(content, tokens)
                    if special in HEADER_STOPS:
                        # The model began a new turn: stop here (closing the stream stops it).
                        if text:
                            pieces.append(text)
                            yield TextChunk(text=text)
                        yield Final(done=self._cut("stop"), text="".join(pieces))
                        return
                    if special is not None:
                        text += special
                    if not text:
                        continue
                    chars += len(text)
                    if self.tokens > self._n_predict or chars > self._caps.completion_chars:
                        yield Final(done=self._cut("length"), text="".join(pieces))
                        return
                    pieces.append(text)
                    yield TextChunk(text=text)
        finally:
            if lines is not None:
                lines.close()
            response.close()  # what stops the generation on an early exit

    def _transport(self, exc: Exception) -> Exception:
        kind = transport_kind(exc)
        if kind == "dropped":
            return Dropped(f"{type(exc).__name__}: {exc}")
        if kind == "read_timeout":
            return self._timeout("next chunk")
        return transport_error(exc, url=self._url, timeouts=self._timeouts, what="generate")

    def _usage(self, part: dict[str, Any] | None) -> Usage:
        timings = part.get("timings") if part is not None else None
        timings = timings if type(timings) is dict else {}

        def count(key: str) -> int:
            value = timings.get(key)
            return value if type(value) is int and value >= 0 else 0

        def nanoseconds(key: str) -> int:
            value = timings.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return int(value * 1e6)
            return 0

        prompt_ns, predicted_ns = nanoseconds("prompt_ms"), nanoseconds("predicted_ms")
        values: dict[str, int] = {
            "prompt_eval_count": count("prompt_n"),
            "eval_count": count("predicted_n") if timings else self.tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_duration": predicted_ns,
            "total_duration": prompt_ns + predicted_ns,
        }
        if "cached_tokens" in Usage.__dataclass_fields__:  # the field other engines added
            values["cached_tokens"] = count("cache_n")
        return Usage(**values, prompt_tokens_sent=self._sent, num_ctx=self._num_ctx)

    def _done(self, part: dict[str, Any]) -> Done:
        stop_type = part.get("stop_type")
        reason = _DONE_REASONS.get(stop_type, "other") if type(stop_type) is str else "other"
        return Done(done_reason=reason, usage=self._usage(part))

    def _cut(self, reason: DoneReason) -> Done:
        """The end of an attempt the client stopped (no final event, so no timings)."""
        if reason == "stop":
            return Done(done_reason="stop", usage=self._usage(None))
        past = "its n_predict" if self.tokens > self._n_predict else "the size cap"
        note = (
            f"llama-server at {self._url} went on generating for {self._model} past {past} "
            f"({self.tokens} tokens, {self._caps.completion_chars} characters at most); the "
            "answer was cut there"
        )
        logger.warning("%s", note)
        return Done(done_reason="length", usage=self._usage(None), warnings=(note,))
