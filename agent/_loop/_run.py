"""The loop: render, generate (streamed, parsed as it comes), run the calls, feed results back.

`run_events` is an async generator that never yields inside a cancel scope or task group: the
deadline wraps each await separately, and the tools of a step all finish before their events go
out. So the consumer may close it, cancel it or drop it from any task, and nothing keeps running.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio

from agent._toolkit import Toolbox
from agent._toolkit._context import RunContext
from agent.backends._base import Backend, Done, GenerateEvent, GenerateOptions
from agent.errors import RunError, StreamError
from agent.llama3 import Message, ParsedCompletion, StreamParser, ToolFormat, render_prompt

from . import _calls as calls
from ._events import Event, RunFinished, RunStarted, StepFinished, TextDelta
from ._limits import Limits
from ._result import RunStatus
from ._state import RunState

# Closing a backend stream (returning its connection to the pool) gets this long, shielded.
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What an agent fixes for all its runs."""

    backend: Backend
    model: str
    toolbox: Toolbox
    options: GenerateOptions
    limits: Limits
    tool_format: ToolFormat | None
    tool_choice: str

    @property
    def call_names(self) -> tuple[str, ...]:
        """The names the model may call: tool names, and the built-ins the tools serve."""
        return (*self.toolbox.names, *self.toolbox.callable_names)

    def render(self, messages: Sequence[Message], *, today: datetime.date) -> str:
        """The full native prompt for `messages` (starting with `<|begin_of_text|>`)."""
        return render_prompt(
            messages,
            self.toolbox.specs,
            model=self.model,
            today=today,
            tool_format=self.tool_format,
            tool_choice=self.tool_choice,
        )


class _Timeout(Exception):
    """The run's deadline passed (internal: becomes status "timeout")."""


async def run_events(spec: RunSpec, state: RunState, *, deps: Any) -> AsyncGenerator[Event, None]:
    """Drive one run, yielding its events; `state` holds the outcome at every moment."""
    timeout = spec.limits.run_timeout
    deadline = anyio.current_time() + timeout if timeout is not None else math.inf
    task = state.messages[state.new_from]
    yield RunStarted(
        run_id=state.run_id, model=spec.model, task=task.content, history=state.new_from
    )
    try:
        while not state.finished:
            if anyio.current_time() >= deadline:
                raise _Timeout
            # aclosing: if the consumer closes us mid-step, the step (and its HTTP stream) closes
            # now, in this task, not whenever the garbage collector gets to it.
            async with aclosing(_step(spec, state, deps=deps, deadline=deadline)) as events:
                async for event in events:
                    yield event
    except _Timeout:
        state.finish("timeout")
    except RunError as exc:
        state.fail(exc)
    yield RunFinished(result=state.result())


async def _step(
    spec: RunSpec, state: RunState, *, deps: Any, deadline: float
) -> AsyncGenerator[Event, None]:
    step = state.steps + 1
    prompt = spec.render(state.messages, today=state.today)
    parser = StreamParser(tools=spec.call_names)
    pieces: list[str] = []
    stream = spec.backend.generate(prompt, model=spec.model, options=spec.options)
    try:
        while True:
            item = await _next(stream, deadline)
            if isinstance(item, Done):
                done = item
                break
            pieces.append(item.text)
            delta = parser.feed(item.text)
            if delta:
                yield TextDelta(step=step, text=delta)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
            await _close(stream)
    parsed = parser.finish()
    rest = _unshown(parsed, parser.shown)
    if rest:
        yield TextDelta(step=step, text=rest)

    state.record_step(done)
    tool_calls = calls.with_ids(parsed.tool_calls, run_id=state.run_id, step=step)
    state.messages.append(
        Message(
            role="assistant",
            content=parsed.content,
            tool_calls=tool_calls,
            stop_reason=parsed.stop_reason,
            raw="".join(pieces),
        )
    )
    finished = StepFinished(
        step=step,
        usage=done.usage,
        done_reason=done.done_reason,
        calls=len(tool_calls),
        malformed=len(parsed.malformed),
        warnings=done.warnings,
    )
    cut = done.done_reason == "length"
    if not parsed.wants_tools or (cut and not tool_calls):
        # A reply cut off by the length limit is reported as such, never as a full answer.
        state.finish("length" if cut else "answered", answer=parsed.content.strip())
        yield finished
        return

    slots, events = calls.check(
        tool_calls,
        parsed.malformed,
        step=step,
        run_id=state.run_id,
        toolbox=spec.toolbox,
        ledger=state.ledger,
        max_repeats=spec.limits.max_repeats,
    )
    settled = False
    try:
        for event in [*events, *calls.started(slots, step=step)]:
            yield event
        context: RunContext[Any] = RunContext(deps=deps, run_id=state.run_id, step=step)
        in_time = await calls.execute(slots, context=context, deadline=deadline)
        messages, events, status = calls.settle(slots, step=step, ledger=state.ledger)
        state.messages.extend(messages)
        settled = True
    finally:
        if not settled:
            # Cancelled or closed mid-step: every call still gets its one tool message, so the
            # conversation stays well formed for a run that continues it.
            state.messages.extend(calls.interrupted(slots))
    for event in [*events, finished]:
        yield event
    _check_limits(state, spec.limits, status, in_time=in_time)


def _check_limits(
    state: RunState, limits: Limits, status: RunStatus | None, *, in_time: bool
) -> None:
    if not in_time:
        state.finish("timeout")
    elif status is not None:
        state.finish(status)
    elif limits.max_tokens is not None and state.usage.tokens >= limits.max_tokens:
        state.finish("token_budget")
    elif state.steps >= limits.max_steps:
        state.finish("step_limit")


async def _next(stream: AsyncIterator[GenerateEvent], deadline: float) -> GenerateEvent:
    """The backend's next event, within the run's deadline."""
    try:
        if deadline == math.inf:
            return await anext(stream)
        with anyio.CancelScope(deadline=deadline):
            return await anext(stream)
        raise _Timeout
    except StopAsyncIteration as exc:
        raise StreamError(
            "the model server's stream ended without a final chunk; retry the run"
        ) from exc


async def _close(stream: AsyncIterator[GenerateEvent]) -> None:
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()


def _unshown(parsed: ParsedCompletion, shown: str) -> str:
    """Answer text the parser held back while it could still have been a call."""
    if parsed.content.startswith(shown):
        return parsed.content[len(shown) :]
    return ""
