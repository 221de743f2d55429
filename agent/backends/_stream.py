"""One attempt at streaming a raw completion: deadlines per line, and failures classified."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import ollama

from agent.backends._base import Done, DoneReason, TextChunk, Usage
from agent.backends._config import Timeouts
from agent.backends._translate import TRANSPORT_ERRORS, UNREADABLE_ERRORS, transport_kind
from agent.errors import BackendError, BackendTimeoutError


class Dropped(Exception):
    """The stream broke off; safe to send again (the backend decides whether to)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class Final:
    """The final line of an attempt, with the text that attempt produced."""

    done: Done
    text: str


_DONE_REASONS: dict[str, DoneReason] = {"stop": "stop", "length": "length", "unload": "unload"}

Deadline = Literal["first chunk", "next chunk", "total"]
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


@contextlib.asynccontextmanager
async def closing_iterator(iterator: AsyncIterator[Any]) -> AsyncGenerator[None, None]:
    """Close an async generator on the way out (what stops an HTTP stream on early exit)."""
    try:
        yield
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class StreamAttempt:
    """Sends one `generate(raw=True, stream=True)` and yields `TextChunk`s, then one `Final`.

    Raises `ollama.ResponseError` for an error status or an in-band error line (the caller
    decides about 503), `Dropped` when the connection broke, `BackendTimeoutError` when a
    deadline passed, and the project's errors for everything else.
    """

    def __init__(
        self,
        client: ollama.AsyncClient,
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
        translate_other: Callable[..., BackendError],
    ) -> None:
        self._client = client
        self._url = url
        self._model = model
        self._prompt = prompt
        self._options = options
        self._keep_alive = keep_alive
        self._timeouts = timeouts
        self._deadline = deadline
        self._sent = sent
        self._num_ctx = num_ctx
        self._translate_other = translate_other

    def _timeout(self, which: Deadline) -> BackendTimeoutError:
        return timeout_error(which, url=self._url, model=self._model, timeouts=self._timeouts)

    async def events(self) -> AsyncGenerator[TextChunk | Final, None]:
        stream = await self._client.generate(
            model=self._model,
            prompt=self._prompt,
            raw=True,
            stream=True,
            options=self._options,
            keep_alive=self._keep_alive,
        )
        pieces: list[str] = []
        total = self._deadline
        step = self._timeouts.first_chunk
        which: Deadline = "first chunk"
        try:
            while True:
                # This runs once per token with Ollama: the deadline and the read are inline.
                limit = total if step is None else min(anyio.current_time() + step, total)
                with anyio.CancelScope(deadline=limit) as scope:
                    try:
                        part = await anext(stream)
                    except StopAsyncIteration:
                        raise Dropped("the stream ended without its final line") from None
                    except TRANSPORT_ERRORS as exc:
                        raise self._transport_error(exc) from exc
                    except UNREADABLE_ERRORS as exc:
                        raise self._translate_other(
                            exc, model=self._model, what="generate"
                        ) from exc
                if scope.cancelled_caught:
                    raise self._timeout(which if limit < total else "total")
                if part.done:
                    yield Final(done=self._done(part), text="".join(pieces))
                    return
                if text := part.response:
                    pieces.append(text)
                    yield TextChunk(text=text)
                step = self._timeouts.between_chunks
                which = "next chunk"
        finally:
            # What stops the HTTP stream (and so the generation) on an early exit.
            await stream.aclose()  # type: ignore[attr-defined]

    def _transport_error(self, exc: Exception) -> Exception:
        kind = transport_kind(exc)
        if kind == "dropped":
            return Dropped(f"{type(exc).__name__}: {exc}")
        if kind == "read_timeout":
            return self._timeout("next chunk")
        return self._translate_other(exc, model=self._model, what="generate")

    def _done(self, part: ollama.GenerateResponse) -> Done:
        usage = Usage(
            prompt_eval_count=part.prompt_eval_count or 0,
            eval_count=part.eval_count or 0,
            total_duration=part.total_duration or 0,
            load_duration=part.load_duration or 0,
            prompt_eval_duration=part.prompt_eval_duration or 0,
            eval_duration=part.eval_duration or 0,
            prompt_tokens_sent=self._sent,
            num_ctx=self._num_ctx,
        )
        reason = _DONE_REASONS.get(part.done_reason or "", "other")
        return Done(done_reason=reason, usage=usage)
