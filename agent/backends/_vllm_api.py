"""vLLM's OpenAI-compatible server as `VLLMBackend` uses it (sources: docs/engines.md, vLLM).

* **Requests**: one streamed `/v1/completions` with the raw prompt (`completion_body`).
* **Errors**: vLLM's error bodies and statuses translated into `agent.errors` (`error_message`,
  `_vllm.Server.status_error`), the context-length 400 with its numbers when the message has them
  (`context_numbers`, every wording vLLM has used).
* **Generating**: `SSEAttempt` reads the server-sent events under the same deadlines and caps as
  the Ollama path (`_wire.Lines`), and tells `<|eom_id|>` from `<|eot_id|>` by `stop_reason`.

The small calls (`/v1/models`, `/tokenize`, `/version`) are `_vllm.Server`'s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson

from agent.backends._base import Done, DoneReason, GenerateOptions, TextChunk, Timeouts, Usage
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
    BackendResponseError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextOverflowError,
    StreamError,
)
from agent.llama3 import EOM, EOT

logger = logging.getLogger("agent.backends.vllm")

loads = orjson.loads

JSON = {"Content-Type": "application/json"}

# Llama 3's end-of-generation ids (generation_config.json of the 3.1-3.3 instruct models lists
# 128001, 128008, 128009) and the header tokens, which end a turn the model should not write
# (Ollama's Modelfile stops on them too). Sent as `stop_token_ids`, so that a repack whose
# generation_config lacks one still stops there.
END_OF_TEXT_ID, EOM_ID, EOT_ID = 128001, 128008, 128009
STOP_TOKEN_IDS = (END_OF_TEXT_ID, EOM_ID, EOT_ID, 128006, 128007)

# What the loop is told after the text: vLLM leaves the stop token out of the text, and says in
# `stop_reason` which it was (the int id; None for the tokenizer's own eos, `<|eot_id|>` for
# the instruct models). The parser and renderer take an end token at the end of the text as
# the model's own (`agent.llama3._parse`, `_render`), so the next prompt holds exactly the
# tokens the model wrote. Other stops (header tokens, `<|end_of_text|>`, stop strings) add
# nothing: the parser infers the end as it does for Ollama.
END_TEXT: dict[int | None, str] = {EOM_ID: EOM, EOT_ID: EOT, None: EOT}


def completion_body(
    *, model: str, prompt: str, options: GenerateOptions, max_tokens: int
) -> dict[str, Any]:
    """The `/v1/completions` request for a native prompt that already holds its one BOS."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,  # vLLM's default is 16
        "stream": True,
        "stream_options": {"include_usage": True},
        "add_special_tokens": False,  # else a second BOS before the prompt's own
        "skip_special_tokens": False,  # else <|python_tag|> is left out of the text
        "spaces_between_special_tokens": False,  # the slow detokenizer's spaces around them
        "stop_token_ids": list(STOP_TOKEN_IDS),
    }
    for key in ("temperature", "top_p", "top_k", "seed"):
        value = getattr(options, key)
        if value is not None:
            body[key] = value
    if options.stop:
        body["stop"] = list(dict.fromkeys(options.stop))
    return body


# --- errors ---------------------------------------------------------------------------------------


def error_message(body: bytes) -> str:
    """The message of an error body, in any of vLLM's shapes: `{"error": {"message": ...}}`
    (recent releases), `{"object": "error", "message": ...}` (older ones),
    `{"error": "Unauthorized"}` (the API-key middleware), FastAPI's `{"detail": ...}`; else
    the body as text."""
    try:
        parsed = loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for value in (error, parsed.get("message"), parsed.get("detail")):
            if isinstance(value, str):
                return value
    return body.decode(errors="replace").strip()[:500]


class ErrorStatus(Exception):
    """An error status from the server; the backend decides about retrying it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


_CONTEXT = re.compile(
    r"maximum context length (?:is|of) (\d+)|context length is only (\d+)"
    r"|maximum model length of (\d+)",
    re.IGNORECASE,
)
_PROMPT = re.compile(
    r"\((\d+) in the messages|has (\d+) input tokens|at least (\d+) input tokens"
    r"|passed (\d+) input tokens|prompt \(length (\d+)\)",
    re.IGNORECASE,
)
_COMPLETION = re.compile(
    r"(\d+) in the completion|requested (\d+) output tokens|is too large: (\d+)", re.IGNORECASE
)


def _number(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    if match is None:
        return None
    return int(next(group for group in match.groups() if group is not None))


_OVERFLOW = re.compile(r"context length|maximum model length", re.IGNORECASE)


def is_context_overflow(message: str) -> bool:
    """Whether a 400's message is vLLM's context-length error (any wording, numbers or not)."""
    return _OVERFLOW.search(message) is not None


def context_numbers(message: str) -> tuple[int | None, int | None, int | None]:
    """(context, prompt tokens, completion tokens) from vLLM's context-length 400, as far as the
    message says them. Every wording so far:

    * ≤ 0.9: "This model's maximum context length is N tokens. However, you requested M tokens
      (P in the messages, C in the completion). ..."
    * 0.10-0.11: "... maximum context length is N tokens. However, your request has P input
      tokens. ..." and "'max_tokens' or 'max_completion_tokens' is too large: C. This model's
      maximum context length is N tokens and your request has P input tokens (C > N - P)."
    * 0.11-0.12: "... maximum context length is N tokens. However, you requested C output tokens
      and your prompt contains at least P input tokens, for a total of at least T tokens. ..."
    * current (`renderers/params.py`): "You passed P input tokens and requested C output
      tokens. However, the model's context length is only N tokens, ..." (or "You passed X input
      characters ...", which gives no token count).
    * the engine's own check: "The decoder prompt (length P) is longer than the maximum model
      length of N. ..."
    """
    return _number(_CONTEXT, message), _number(_PROMPT, message), _number(_COMPLETION, message)


def overflow(
    *, needed: int, available: int, model: str, prompt_tokens: int
) -> ContextOverflowError:
    """Ollama's `ContextOverflowError`, advising vLLM's settings (the server fixes the context)."""
    if prompt_tokens < available:
        advice = (
            "Lower num_predict, or restart vLLM with a larger --max-model-len (up to the "
            "model's context length). Start a new conversation to free the whole context."
        )
    else:
        advice = (
            "Start a new conversation, shorten the history or the tool results, restart vLLM "
            "with a larger --max-model-len if the model and the GPUs' memory allow, or serve "
            "a model with a longer context."
        )
    return ContextOverflowError(
        needed=needed, available=available, model=model, prompt_tokens=prompt_tokens, advice=advice
    )


def context_error(
    message: str, *, model: str, sent: int, max_tokens: int, context: int
) -> ContextOverflowError:
    """The same error as Ollama's, with the server's numbers where its message has them."""
    available, prompt_tokens, completion = context_numbers(message)
    prompt_tokens = prompt_tokens if prompt_tokens is not None else sent
    completion = completion if completion is not None else max_tokens
    return overflow(
        needed=prompt_tokens + completion,
        available=available if available is not None else context,
        model=model,
        prompt_tokens=prompt_tokens,
    )


def unauthorized(url: str, *, key_given: bool) -> BackendResponseError:
    what = (
        "rejected the API key"
        if key_given
        else "needs an API key (it was started with --api-key or VLLM_API_KEY)"
    )
    return BackendResponseError(
        f"vLLM at {url} {what}. Pass the server's key: `api_key` in the config or on the "
        "backend, --api-key on the command line, or the VLLM_API_KEY environment variable.",
        status_code=401,
    )


_SETTING: dict[Deadline, str] = {
    "first chunk": "first_chunk",
    "next chunk": "between_chunks",
    "total": "total",
}
_ADVICE: dict[Deadline, str] = {
    "first chunk": "vLLM may be queueing requests (its KV cache is full) or prefilling a long "
    "prompt; raise Timeouts.first_chunk, or lower the backend's concurrency",
    "next chunk": "the server stalled mid-answer; check its log or raise Timeouts.between_chunks",
    "total": "the whole generation took too long; raise Timeouts.total or lower num_predict",
}


def timeout_error(
    which: Deadline, *, url: str, model: str, timeouts: Timeouts, note: str = ""
) -> BackendTimeoutError:
    """The error for a passed deadline, naming the configured limit."""
    setting = _SETTING[which]
    what = "end of the answer" if which == "total" else which
    return BackendTimeoutError(
        f"no {what} from vLLM at {url} for {model} within the deadline "
        f"(Timeouts.{setting} = {getattr(timeouts, setting)} s){note}: {_ADVICE[which]}."
    )


def translate_transport(
    exc: BaseException, *, url: str, timeouts: Timeouts, what: str
) -> Exception:
    """A transport failure (`_wire.transport_kind`) as the project's error, or `Dropped`."""
    kind = transport_kind(exc)
    if kind == "unreachable":
        return BackendUnreachableError(
            url,
            unreachable_reason(exc),
            advice="Start it (`vllm serve <model>`), or point --host at a running vLLM server.",
        )
    if kind == "connect_timeout":
        return BackendTimeoutError(
            f"connecting to vLLM at {url} took longer than {timeouts.connect} s. Check the host "
            "and the network, or raise Timeouts.connect."
        )
    if kind == "dropped" and what == "generate":
        return Dropped(f"{type(exc).__name__}: {exc}")
    return StreamError(
        f"the connection to vLLM at {url} broke during {what} ({exc}). Check that the server "
        "is still running."
    )


# --- generating -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Caps:
    """What one generation may bring in: bytes per event line, characters in all."""

    line_bytes: int = 1 << 20
    completion_chars: int = 1 << 21


@dataclass(frozen=True, kw_only=True)
class Final:
    """The end of an attempt, with the text that attempt produced."""

    done: Done
    text: str
    end: str = ""  # the end token to append to the text (see END_TEXT)
    cut: bool = False  # the client ended it (past max_tokens or the size cap)


_DONE_REASONS: dict[str, DoneReason] = {"stop": "stop", "length": "length", "abort": "other"}


class SSEAttempt:
    """POSTs one streamed `/v1/completions` and yields `TextChunk`s, then one `Final`.

    Raises `ErrorStatus` for an error status (the caller decides about 503/429), `Dropped` when
    the connection broke or the stream ended before its finish, `BackendTimeoutError` when a
    deadline passed, `StreamError` for an event vLLM would not send or an in-band error.
    More than `max_tokens` chunks, or more text than the caps allow, end the attempt as
    `length` whatever the server does.
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
        context: int,
        caps: Caps,
        note: str = "",
    ) -> None:
        self._session = session
        self._url = url
        self._model = model
        self._body = orjson.dumps(body)
        self._max_tokens = int(body["max_tokens"])
        self._timeouts = timeouts
        self._deadline = deadline
        self._sent = sent
        self._context = context
        self._caps = caps
        self._note = note

    def _timeout(self, which: Deadline) -> BackendTimeoutError:
        return timeout_error(
            which, url=self._url, model=self._model, timeouts=self._timeouts, note=self._note
        )

    def _garbled(self, what: str) -> StreamError:
        return StreamError(
            f"the stream from vLLM at {self._url} for {self._model} contained {what}. Is the "
            "host a vLLM server (`vllm serve`), and not a proxy or another service?"
        )

    def _transport(self, exc: Exception) -> Exception:
        if transport_kind(exc) == "read_timeout":
            return self._timeout("next chunk")
        return translate_transport(exc, url=self._url, timeouts=self._timeouts, what="generate")

    async def events(self) -> AsyncGenerator[TextChunk | Final, None]:
        total_at = self._deadline
        first = self._timeouts.first_chunk
        first_at = total_at if first is None else min(anyio.current_time() + first, total_at)
        with anyio.CancelScope(deadline=first_at) as scope:
            try:
                response = await self._session.post(
                    self._url + "/v1/completions", data=self._body, headers=JSON
                )
            except TRANSPORT_ERRORS as exc:
                raise self._transport(exc) from exc
        if scope.cancelled_caught:
            raise self._timeout("first chunk" if first_at < total_at else "total")
        lines: Lines | None = None
        try:
            if response.status != 200:
                body = await response.content.read(self._caps.line_bytes)
                if response.content.at_eof():
                    response.release()  # a 503 is retried: keep the connection for it
                raise ErrorStatus(response.status, error_message(body))
            lines = Lines(
                response.content,
                first_at=first_at,
                between=self._timeouts.between_chunks,
                total_at=total_at,
                max_line=self._caps.line_bytes,
            )
            async for event in self._read(lines, response):
                yield event
                if isinstance(event, Final):
                    return
        finally:
            if lines is not None:
                lines.close()
            response.close()  # a no-op after release(); else what stops the generation

    async def _read(
        self, lines: Lines, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[TextChunk | Final, None]:
        pieces: list[str] = []
        chars = 0
        finish: tuple[str, Any] | None = None  # (finish_reason, stop_reason) once it came
        usage: dict[str, Any] | None = None
        while True:
            try:
                batch = await lines.batch()
            except Expired as exc:
                raise self._timeout(exc.which) from None
            except LineTooLong as exc:
                raise self._garbled(f"a line longer than {exc.limit} bytes") from None
            except TRANSPORT_ERRORS as exc:
                if finish is None:
                    raise self._transport(exc) from exc
                # The answer is whole; only its usage event was lost: not worth sending again.
                logger.info("%s: the stream broke after its finish (%s)", self._model, exc)
                batch = []
            if not batch:  # the end of the body
                if finish is None:
                    raise Dropped("the stream ended before its finish_reason")
                yield self._final(finish, usage, pieces)
                return
            for raw in batch:
                if not raw.startswith(b"data:"):
                    if raw.strip() and not raw.startswith((b":", b"event:", b"id:", b"retry:")):
                        raise self._garbled(f"a line that is not an event: {raw[:80]!r}")
                    continue  # blank separators, comments, other SSE fields
                data = raw[5:].strip()
                if data == b"[DONE]":
                    if finish is None:
                        raise self._garbled("[DONE] before any finish_reason")
                    if await lines.drain():
                        response.release()  # the connection serves the next request
                    yield self._final(finish, usage, pieces)
                    return
                try:
                    event = loads(data)
                except orjson.JSONDecodeError as exc:
                    raise self._garbled(f"an event that is not JSON ({exc})") from None
                if type(event) is not dict:
                    raise self._garbled(f"an event that is not a JSON object: {data[:80]!r}")
                if "error" in event:
                    raise StreamError(
                        f"vLLM at {self._url} reported an error in the middle of the stream for "
                        f"{self._model}: {error_message(data)}. Check the server's log, then "
                        "try again."
                    )
                if type(event.get("usage")) is dict:
                    usage = event["usage"]
                choices = event.get("choices")
                if type(choices) is not list:
                    raise self._garbled(f"an event without choices: {data[:80]!r}")
                for choice in choices:
                    if type(choice) is not dict:
                        raise self._garbled(f"a choice that is not an object: {data[:80]!r}")
                    text = choice.get("text")
                    if text:
                        if type(text) is not str:
                            raise self._garbled(f"a text that is not a string: {data[:80]!r}")
                        chars += len(text)
                        if len(pieces) >= self._max_tokens or chars > self._caps.completion_chars:
                            yield self._cut(pieces)
                            return
                        pieces.append(text)
                        yield TextChunk(text=text)
                    reason = choice.get("finish_reason")
                    if reason is not None:
                        finish = (str(reason), choice.get("stop_reason"))

    def _usage(self, usage: dict[str, Any] | None, *, eval_count: int = 0) -> Usage:
        prompt = completion = cached = 0
        if usage is not None:
            prompt = _int(usage.get("prompt_tokens"))
            completion = _int(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            if type(details) is dict:
                cached = _int(details.get("cached_tokens"))
        return Usage(
            # As Ollama counts it: the prompt tokens evaluated, the cached ones apart.
            prompt_eval_count=max(prompt - cached, 0),
            eval_count=completion or eval_count,
            prompt_tokens_sent=self._sent,
            num_ctx=self._context,
            cached_tokens=cached,
        )

    def _final(
        self, finish: tuple[str, Any], usage: dict[str, Any] | None, pieces: list[str]
    ) -> Final:
        reason, stop_reason = finish
        if reason == "error":  # vLLM ≥ 0.11 streams an error event instead; older ones this
            raise StreamError(
                f"vLLM at {self._url} ended the answer for {self._model} with an internal error. "
                "Check the server's log, then try again."
            )
        done_reason = _DONE_REASONS.get(reason, "other")
        end = ""
        if done_reason == "stop" and (stop_reason is None or type(stop_reason) is int):
            end = END_TEXT.get(stop_reason, "")
        done = Done(done_reason=done_reason, usage=self._usage(usage, eval_count=len(pieces)))
        return Final(done=done, text="".join(pieces), end=end)

    def _cut(self, pieces: list[str]) -> Final:
        """The end of an attempt the client stopped: past `max_tokens` or the size cap."""
        chunks = len(pieces)
        past = "its max_tokens" if chunks >= self._max_tokens else "the size cap"
        note = (
            f"vLLM at {self._url} went on generating for {self._model} past {past} ({chunks} "
            f"chunks, {self._caps.completion_chars} characters at most); the answer was cut there"
        )
        logger.warning("%s", note)
        done = Done(
            done_reason="length", usage=self._usage(None, eval_count=chunks), warnings=(note,)
        )
        return Final(done=done, text="".join(pieces), cut=True)


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0
