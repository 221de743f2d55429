"""One run: its opening messages, its state, the loop that drives it, and the stream it is read as.

The loop renders, generates (streamed, parsed as it comes), runs the calls, feeds the results
back. `run_events` is an async generator that never yields inside a cancel scope or task group:
the deadline wraps each await separately, and a step's tools either all finish inside one await
(their task group opened and closed within it), or, given the caller's `task_group`, run there
under cancel scopes the step owns, so each can be reported as it ends. Either way the consumer
may close the generator, cancel it or drop it from any task, and nothing keeps running.
"""

from __future__ import annotations

import datetime
import functools
import math
import types
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Generator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from agent.backends import (
    Backend,
    Done,
    DoneReason,
    GenerateEvent,
    GenerateOptions,
    run_affinity,
)
from agent.errors import BackendTimeoutError, DeveloperError, RunError, StreamError
from agent.llama3 import (
    Family,
    Message,
    ParsedCompletion,
    StreamParser,
    ToolFormat,
    model_family,
    parse_completion,
    plain_text,
    render_prompt,
)
from agent.toolkit import LiveToolbox, RunContext, Toolbox

from . import _calls as calls
from ._events import (
    ApprovalRequested,
    Approver,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    TextDelta,
    ToolCallRejected,
    decide,
    denied_text,
    needs_approval,
)
from ._result import Limits, RunResult, RunStatus, RunUsage
from ._tracing import RequestTrace, RunTrace

# Closing a backend stream (returning its connection to the pool) gets this long, shielded.
_CLOSE_TIMEOUT = 5.0

T = TypeVar("T")


# --- what an agent fixes for all its runs ---------------------------------------------------------


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
    # Tool sources (MCP servers): each run takes their tools as they are when it starts.
    live: LiveToolbox | None = None
    name: str = "llama-agent"
    approve: Approver | None = None

    @functools.cached_property
    def call_names(self) -> tuple[str, ...]:
        """The names the model may call: tool names, and the built-ins the tools serve (a spec
        is frozen and a toolbox fixed: asked every step, made once)."""
        return (*self.toolbox.names, *self.toolbox.callable_names)

    def render(
        self, messages: Sequence[Message], *, today: datetime.date, family: Family | None = None
    ) -> str:
        """The full native prompt for `messages` (starting with `<|begin_of_text|>`).

        `family`: the Llama 3.x release the server reported for the model; `None` takes it from
        the model's name (`agent.llama3.model_family`).
        """
        return render_prompt(
            messages,
            self.toolbox.specs,
            # render_prompt reads only the family from the name, so "llama3.2" picks 3.2's format.
            model=f"llama{family}" if family is not None else self.model,
            today=today,
            tool_format=self.tool_format,
            tool_choice=self.tool_choice,
        )


# --- where a run starts ---------------------------------------------------------------------------

History = RunResult | Sequence[Message] | None


def opening_messages(
    task: str | Message | None, *, system: str | None, history: History
) -> tuple[list[Message], int]:
    """The run's first messages, and the index of the task among them (`None`: no new task,
    the history as it stands).

    The agent's `system` (trusted: the program wrote it) replaces a system message at the start
    of the history; history without one keeps its own. So a conversation continued by the same
    agent renders the same prefix and the server's prompt cache still applies.
    """
    earlier = list(history.messages if isinstance(history, RunResult) else history or ())
    for message in earlier:
        if not isinstance(message, Message):
            raise DeveloperError(
                f"history must hold agent.llama3.Message objects (or be a RunResult), got "
                f"{type(message).__name__}; build them with Message(...) or Message.from_dict(...)"
            )
    if system is not None:
        if earlier and earlier[0].role == "system":
            earlier = earlier[1:]
        earlier.insert(0, Message(role="system", content=system, trusted=True))
    if isinstance(task, Message):
        if task.role != "user":
            raise DeveloperError(f"the task must be a user message, got role '{task.role}'")
        earlier.append(task)
    elif task is not None:
        earlier.append(Message(role="user", content=task))
    return earlier, len(earlier) - 1 if task is not None else len(earlier)


# --- what a run has done so far -------------------------------------------------------------------


class RunState:
    """Everything a run has done so far; `result()` snapshots it at any moment."""

    def __init__(
        self,
        *,
        run_id: str,
        model: str,
        messages: list[Message],
        new_from: int,
        limits: Limits,
        today: datetime.date,
        history: int = 0,
    ) -> None:
        self.run_id = run_id
        self.model = model
        self.messages = messages
        self.new_from = new_from
        self.history = history  # how many messages came from `history=`
        self.family: Family | None = None  # the prompt family the server reported
        self.limits = limits
        self.today = today
        self.ledger = calls.Ledger(limits)
        self.usage = RunUsage()
        self.steps = 0
        self.done_reason: DoneReason | None = None
        self.status: RunStatus | None = None
        self.answer = ""
        self.exception: RunError | None = None
        self.warnings: list[str] = []
        self.always_approved: set[str] = set()  # tools approved for the rest of the run

    def record_step(self, done: Done) -> None:
        self.steps += 1
        self.usage = self.usage.add(done.usage)
        self.done_reason = done.done_reason
        self.warnings.extend(done.warnings)

    def finish(self, status: RunStatus, *, answer: str = "") -> None:
        self.status = status
        self.answer = answer

    def fail(self, exc: RunError) -> None:
        self.status = "error"
        self.exception = exc

    @property
    def finished(self) -> bool:
        return self.status is not None

    def result(self) -> RunResult:
        """The result so far; a run that never reached an end reads as `"cancelled"`."""
        return RunResult(
            answer=self.answer,
            messages=tuple(self.messages),
            status=self.status or "cancelled",
            usage=self.usage,
            steps=self.steps,
            done_reason=self.done_reason,
            error=str(self.exception) if self.exception else None,
            exception=self.exception,
            run_id=self.run_id,
            model=self.model,
            today=self.today,
            new_from=self.new_from,
            warnings=tuple(self.warnings),
            family=self.family,
        )


class RunStream:
    """What `Agent.stream()` returns: an async iterator of `Event`s ending with `RunFinished`.

    Iterating drives the run; nothing runs between iterations (except, with `task_group=`, the
    current step's tool calls, in that group). Closing the stream early (`await
    stream.aclose()`, leaving `async with stream:`) or cancelling the task that iterates cancels
    the run: its HTTP stream and every running tool call, all stopped when that returns.
    `result` is the run's state at any moment; a run closed or cancelled before its end reads as
    status `"cancelled"`, with every step completed so far in `result.messages`.

    `async with stream:` holds no task group or cancel scope, so it may span a `yield` (an SSE
    endpoint's generator, for instance).

    A `RunError` (Ollama down, model missing...) does not raise here: the stream ends with a
    `RunFinished` whose result has status `"error"` and the exception in `result.exception`.
    """

    def __init__(self, events: AsyncGenerator[Event, None], state: RunState) -> None:
        self._events = events
        self._state = state

    def __aiter__(self) -> RunStream:
        return self

    def __anext__(self) -> Awaitable[Event]:
        # The generator's own awaitable, not a coroutine around it: every chunk's wait passes
        # through each level of this chain, twice.
        return self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the run if it is still going; waits until its stream and tools have stopped."""
        await self._events.aclose()

    async def __aenter__(self) -> RunStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def result(self) -> RunResult:
        """The run's result, or what it has done so far."""
        return self._state.result()

    @property
    def run_id(self) -> str:
        return self._state.run_id


# --- the loop -------------------------------------------------------------------------------------


class _Timeout(Exception):
    """The run's deadline passed (internal: becomes status "timeout")."""


async def run_events(
    spec: RunSpec,
    state: RunState,
    *,
    deps: Any,
    task_group: TaskGroup | None = None,
    quiet: bool = False,
) -> AsyncGenerator[Event, None]:
    """Drive one run, yielding its events; `state` holds the outcome at every moment.

    `task_group`: where a step's calls run, so that each `ToolCallFinished` is yielded as its
    call ends; without it, a step's finished events come once all its calls are done.
    `quiet`: only `RunStarted`, each `StepFinished` (a session commits there) and `RunFinished`
    (`Agent.run` reads no others); each completion is then parsed once it is whole, not as it
    streams, so a chunk goes no further up than the step.
    """
    timeout = spec.limits.run_timeout
    deadline = anyio.current_time() + timeout if timeout is not None else math.inf
    task = state.messages[state.new_from]
    run_trace = RunTrace(spec, state, name=spec.name, deadline=deadline)
    try:
        yield RunStarted(
            run_id=state.run_id, model=spec.model, task=task.content, history=state.history
        )
        try:
            if spec.live is not None:
                spec = replace(spec, toolbox=await _within(deadline, spec.live.current()))
            state.family = await _family(spec, state, deadline)
            while not state.finished:
                if deadline != math.inf and anyio.current_time() >= deadline:
                    raise _Timeout
                # aclosing: if the consumer closes us mid-step, the step (and its HTTP stream)
                # closes now, in this task, not whenever the garbage collector gets to it.
                async with aclosing(
                    _step(
                        spec,
                        state,
                        deps=deps,
                        deadline=deadline,
                        group=task_group,
                        trace=run_trace,
                        deltas=not quiet,
                    )
                ) as events:
                    async for event in events:
                        if not quiet or type(event) is StepFinished:
                            yield event
        except _Timeout:
            state.finish("timeout")
        except RunError as exc:
            state.fail(exc)
    finally:
        # Ended before RunFinished goes out, so a consumer that stops there sees the span.
        run_trace.end(state)
    yield RunFinished(result=state.result())


async def _family(spec: RunSpec, state: RunState, deadline: float) -> Family | None:
    """The prompt family the server reports for the model (asked once per backend and model).

    A custom name (`myassistant`) says nothing about the format; `/api/show` does. The server's
    tool capability is only a warning: it describes Ollama's own template, which raw mode does
    not use, so a model whose template lacks tools can still be given the native tool prompt.
    """
    info = await _within(deadline, spec.backend.model_info(spec.model))
    if spec.toolbox.tools and info.capabilities and not info.supports_tools:
        state.warnings.append(
            f"the server says model '{spec.model}' does not support tools (its template has "
            "none); "
            "the runtime sends Llama's native tool prompt anyway, which works only if the "
            "model is a Llama 3.1/3.2/3.3 instruct model"
        )
    if info.family == "unknown":
        state.warnings.append(
            f"the server does not identify model '{spec.model}' as Llama 3.x; the prompt uses the "
            f"Llama {model_family(spec.model)} format chosen from its name"
        )
        return None
    return info.family


async def _step(
    spec: RunSpec,
    state: RunState,
    *,
    deps: Any,
    deadline: float,
    group: TaskGroup | None,
    trace: RunTrace,
    deltas: bool,
) -> AsyncGenerator[Event, None]:
    step = state.steps + 1
    prompt = spec.render(state.messages, today=state.today, family=state.family)
    # Without deltas the text is parsed once it is whole (the parse is the same, by contract).
    parser = StreamParser(tools=spec.call_names) if deltas else None
    pieces: list[str] = []
    request = trace.request(spec, state.messages)
    backend = spec.backend
    # A backend that takes the deadline ends its stream by then itself (one timer per stream):
    # only the wait before the first chunk (connection gate, counting, connecting) needs a
    # cancel scope here, not every chunk; without a deadline, none does. Each chunk then costs
    # one `__anext__` of the backend's generator, no coroutine of ours around it.
    bounded = deadline != math.inf
    handed = bounded and backend.takes_deadline
    # Which run asks, for a backend with several hosts (each step on the run's host); set only
    # around the call, as this generator may be resumed from other tasks and contexts.
    affinity = run_affinity.set(state.run_id)
    extra: dict[str, Any] = {}
    if handed:
        extra["deadline"] = deadline
    if not deltas and backend.takes_chunked:
        extra["chunked"] = False  # nothing here reads a chunk before the text is whole
    try:
        stream = backend.generate(prompt, model=spec.model, options=spec.options, **extra)
    finally:
        run_affinity.reset(affinity)
    feed = parser.feed if parser is not None else None
    try:
        bare = not bounded  # read with a plain await (else within the deadline's scope)
        while True:
            if bare:
                try:
                    item = await _traced(request, stream.__anext__())
                except BackendTimeoutError:
                    if bounded and anyio.current_time() >= deadline:
                        raise _Timeout from None
                    raise
            else:
                item = await _traced(request, _within(deadline, stream.__anext__()))
                bare = handed
            if isinstance(item, Done):
                if handed and anyio.current_time() >= deadline:
                    raise _Timeout  # its closing checks ran past the deadline, unbounded
                done = item
                break
            pieces.append(item.text)
            if feed is not None:
                delta = feed(item.text)
                if delta:
                    yield TextDelta(step=step, text=delta)
    except StopAsyncIteration as exc:
        error = StreamError("the model server's stream ended without a final chunk; retry the run")
        request.fail(error)
        raise error from exc
    except BaseException as exc:
        request.fail(exc, timeout=isinstance(exc, _Timeout))
        raise
    finally:
        await _close(stream)
    if parser is not None:
        parsed = parser.finish()
    else:
        parsed = parse_completion("".join(pieces), tools=spec.call_names)
    if parsed.wants_tools and not spec.toolbox:
        # An agent without tools takes what the model wrote as its answer (llama-stack does the
        # same): a call-shaped reply cannot run, and "unknown tool" would send the model round
        # in circles until the retry budget ends the run.
        parsed = ParsedCompletion(content=plain_text("".join(pieces)))
    spans = _botched(parsed)
    if parser is not None:
        rest = _unshown(parsed.content, spans, shown=parser.shown)
        if rest:
            yield TextDelta(step=step, text=rest)
    prose = _without(parsed.content, spans).strip()

    state.record_step(done)
    tool_calls = calls.with_ids(parsed.tool_calls, run_id=state.run_id, step=step)
    request.done(done, completion=prose, calls=tool_calls)
    state.messages.append(
        Message(
            role="assistant",
            content=prose,
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
        if parsed.malformed:
            state.warnings.append(
                "the length limit cut the reply off in the middle of a tool call (it is in the "
                "last message's `raw`); raise num_predict if calls need more tokens"
            )
        state.finish("length" if cut else "answered", answer=prose)
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
        for event in events:
            yield event
        for slot in slots:
            if needs_approval(slot, state.always_approved):
                asking = _approval_request(slot, step)
                yield asking
                verdict = await _within(deadline, decide(asking, spec.approve))
                if verdict.decision == "always":
                    state.always_approved.add(asking.tool)
                elif not verdict.approved:
                    slot.feedback = denied_text(asking.tool, verdict.reason)
                    slot.bound = None
                    yield _denied(slot, asking)
        if deadline != math.inf and anyio.current_time() >= deadline:
            raise _Timeout  # spent deciding (or reading the events): no call starts
        for event in calls.started(slots, step=step):
            yield event
        context: RunContext[Any] = RunContext(deps=deps, run_id=state.run_id, step=step)
        if group is None:
            in_time = await calls.execute(slots, context=context, deadline=deadline, trace=trace)
        else:
            running = calls.Running(
                slots, context=context, deadline=deadline, group=group, trace=trace
            )
            try:
                for _ in running.slots:
                    slot = await running.next()
                    slot.announced = True
                    yield calls.finished(slot, step=step)
            finally:
                await running.stop()
            in_time = running.in_time
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


def _approval_request(slot: calls.Slot, step: int) -> ApprovalRequested:
    assert slot.tool is not None
    assert slot.bound is not None
    return ApprovalRequested(
        step=step,
        index=slot.index,
        id=slot.call.id,
        name=slot.call.name,
        tool=slot.tool.name,
        arguments=slot.bound.arguments,
    )


def _denied(slot: calls.Slot, request: ApprovalRequested) -> ToolCallRejected:
    assert slot.feedback is not None
    return ToolCallRejected(
        step=request.step,
        index=request.index,
        id=request.id,
        name=request.name,
        arguments=request.arguments,
        reason="denied",
        error=slot.feedback,
    )


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


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable` before the run's deadline, else `_Timeout`."""
    if deadline == math.inf:
        return await awaitable
    try:
        with anyio.CancelScope(deadline=deadline):
            return await awaitable
    except BackendTimeoutError:
        # A backend given the deadline too (`Backend.takes_deadline`) may notice it first.
        if anyio.current_time() >= deadline:
            raise _Timeout from None
        raise
    raise _Timeout


async def _close(stream: AsyncIterator[GenerateEvent]) -> None:
    """Close the backend's stream, shielded from the caller's cancellation and bounded by its
    own deadline once it has to wait (to return a connection, say). A stream that has ended
    closes without waiting, so it needs no scope: its first step runs here, bare."""
    # The exact type first: an ABC's isinstance is slow, and this runs every step.
    if type(stream) is not types.AsyncGeneratorType and not isinstance(stream, AsyncGenerator):
        return
    closing = stream.aclose()
    try:
        waits_for = closing.send(None)
    except StopIteration:
        return
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _CLOSE_TIMEOUT):
        await _go_on(closing, waits_for)


@types.coroutine
def _go_on(steps: Coroutine[Any, Any, None], first: Any) -> Generator[Any, Any, None]:
    """Await the rest of an awaitable whose first step (which yielded `first`) already ran."""
    value = first
    while True:
        try:
            sent = yield value
        except BaseException as exc:  # thrown in (cancellation): passed on, as `await` does
            try:
                value = steps.throw(exc)
            except StopIteration:
                return
        else:
            try:
                value = steps.send(sent)
            except StopIteration:
                return


# --- what of the completion is prose ------------------------------------------------------
#
# The parser keeps a botched call's text in `content` (so nothing the model wrote is lost),
# while a good call's text is not there. The loop treats both alike: the caller is shown, and
# the assistant message holds, the prose only. The botched text stays in `raw` and in the
# `CallMalformed` event.


def _botched(parsed: ParsedCompletion) -> list[tuple[int, int]]:
    """Where each malformed call's text sits in `parsed.content`, in order."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for bad in parsed.malformed:
        text = bad.text.strip()
        at = parsed.content.find(text, cursor) if text else -1
        if at >= 0:
            spans.append((at, at + len(text)))
            cursor = at + len(text)
    return spans


def _without(content: str, spans: Sequence[tuple[int, int]], start: int = 0) -> str:
    """`content[start:]` minus the spans."""
    kept: list[str] = []
    position = start
    for begin, end in spans:
        if end <= position:
            continue
        kept.append(content[position : max(begin, position)])
        position = end
    kept.append(content[position:])
    return "".join(kept)


def _unshown(content: str, spans: Sequence[tuple[int, int]], *, shown: str) -> str:
    """The prose the parser held back while it could still have been a call.

    `content` starts with what the parser has shown (its contract); the rest, minus botched
    calls, is shown now. Trailing space is dropped, as the final content is stripped.
    """
    if not content.startswith(shown):
        return ""
    rest = _without(content, spans, start=len(shown))
    if not shown:
        rest = rest.lstrip()
    return rest.rstrip()


def _traced(request: RequestTrace, awaitable: Awaitable[T]) -> Awaitable[T]:
    """`awaitable`, under the request's span when one records (else as it is: nothing per chunk)."""
    return awaitable if request.span is None else request.current(awaitable)
