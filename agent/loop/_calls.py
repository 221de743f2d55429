"""One step's calls: validate each, run the valid ones concurrently, turn results into messages.

Every call gets exactly one `tool` message, in the model's order, whether it ran, was rejected
(unknown tool, invalid arguments, repeated) or was cut short by the run's time limit; each
malformed call gets one too, after them. What the model is told when a call cannot run is
written here too, and the retry and repeat counts are kept in the run's `Ledger`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
from anyio.abc import TaskGroup

from agent import llama3
from agent.errors import InvalidArgumentsError, UnknownToolError
from agent.llama3 import Message, ToolCall
from agent.toolkit import BoundCall, RunContext, Tool, Toolbox, ToolResult, is_plain_json

from ._events import (
    CallMalformed,
    Event,
    RejectReason,
    ToolCallFinished,
    ToolCallParsed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallValidated,
)
from ._result import UNATTRIBUTED_RETRIES, Limits, RunStatus
from ._tracing import RunTrace

# The retry-budget key for calls that name no known tool (unknown tools, garbled calls).
UNATTRIBUTED = ""


class Ledger:
    """Failures in a row per tool and how often each identical call was made (one per run)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._failures: dict[str, int] = {}
        self._seen: dict[tuple[str, bytes | str], int] = {}

    def budget(self, tool_retries: int | None) -> int:
        """The retry budget of a tool (`None`: a call that names no known tool)."""
        if self._limits.max_retries is not None:
            return self._limits.max_retries
        return UNATTRIBUTED_RETRIES if tool_retries is None else tool_retries

    def fail(self, key: str) -> int:
        """Count one more failure for `key`; returns the failures in a row."""
        self._failures[key] = self._failures.get(key, 0) + 1
        return self._failures[key]

    def succeed(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def repeat(self, tool: str, arguments: Mapping[str, Any]) -> int:
        """Count a call; returns how many times this exact call has now been made in the run."""
        key = (tool, call_key(arguments))
        count = self._seen.get(key, 0) + 1
        self._seen[key] = count
        return count


def call_key(arguments: Any) -> bytes | str:
    """What makes two calls' arguments the same: equal keys exactly when
    `json.dumps(arguments, sort_keys=True, default=repr)` writes them alike.

    The arguments of nearly every call are plain JSON values (what `json.loads` makes), which
    orjson writes about ten times faster; for those its text and json.dumps' say the same thing.
    Anything else (a tuple, an enum, NaN, an integer past 64 bits) goes through json.dumps, and
    its text is then read back and keyed like the plain value it stands for, if it stands for one
    (a tuple is the list json.dumps writes), so that both routes agree on every value.
    """
    import orjson  # here, not at the top: `import agent` does not load it (a fraction of a µs)

    if is_plain_json(arguments):
        try:
            return _kept(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:  # an integer past 64 bits, a lone surrogate
            pass
    text = json.dumps(arguments, sort_keys=True, default=repr)
    read = json.loads(text)
    if is_plain_json(read) and json.dumps(read, sort_keys=True, default=repr) == text:
        try:
            return _kept(orjson.dumps(read, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:
            pass
    return text


def _kept(data: bytes) -> bytes:
    """A copy of orjson's output the size of its content: orjson's own bytes object keeps the
    4 KiB buffer it wrote into, and a run keeps a key per call (1,000 runs: +20 MB)."""
    return bytes(memoryview(data))


@dataclass(kw_only=True)
class Slot:
    """One call of the step and what became of it."""

    index: int
    call: ToolCall
    tool: Tool | None = None
    bound: BoundCall | None = None
    feedback: str | None = None  # set when the call is rejected: what the model is told
    counts_as_failure: bool = False
    over_repeat_limit: bool = False
    result: ToolResult | None = None
    elapsed: float = 0.0  # seconds it ran before the run's deadline stopped it
    announced: bool = False  # its ToolCallFinished already went out, as it finished
    cancelled: bool = False  # stopped from outside the run (its task group was cancelled)
    abandoned: bool = False  # it ignored being stopped and was left running (see agent.toolkit)

    def abandon(self) -> None:
        self.abandoned = True

    @property
    def tool_name(self) -> str | None:
        """The name for the call's tool message: the tool's, else what the model called."""
        return self.tool.name if self.tool is not None else self.call.name or None


def with_ids(calls: Sequence[ToolCall], *, run_id: str, step: int) -> tuple[ToolCall, ...]:
    """The calls, each with an id (the parser leaves them empty; tool messages refer to them)."""
    prefix = f"call_{run_id[:8]}_{step}_"
    return tuple(
        call if call.id else ToolCall(name=call.name, arguments=call.arguments, id=f"{prefix}{i}")
        for i, call in enumerate(calls)
    )


def check(
    calls: Sequence[ToolCall],
    malformed: Sequence[llama3.MalformedCall],
    *,
    step: int,
    run_id: str,
    toolbox: Toolbox,
    ledger: Ledger,
    max_repeats: int,
) -> tuple[list[Slot], list[Event]]:
    """One slot per call, then one per malformed call: resolved, validated, repeats spotted."""
    slots: list[Slot] = []
    events: list[Event] = []
    for index, call in enumerate(calls):
        slot = Slot(index=index, call=call)
        slots.append(slot)
        events.append(
            ToolCallParsed(
                step=step, index=index, id=call.id, name=call.name, arguments=call.arguments
            )
        )
        try:
            slot.tool = toolbox.resolve(call.name)
            slot.bound = slot.tool.validate(call.arguments)
        except UnknownToolError as exc:
            slot.feedback, slot.counts_as_failure = _unknown_tool_text(exc), True
            events.append(_rejected(slot, step, "unknown_tool"))
            continue
        except InvalidArgumentsError as exc:
            assert slot.tool is not None
            slot.feedback = _invalid_arguments_text(slot.tool.name, exc)
            slot.counts_as_failure = True
            events.append(_rejected(slot, step, "invalid_arguments"))
            continue
        coercions = slot.bound.coercions
        events.append(
            ToolCallValidated(
                step=step,
                index=index,
                id=call.id,
                name=call.name,
                tool=slot.tool.name,
                arguments=slot.bound.arguments,
                coercions=tuple(map(str, coercions)) if coercions else (),
            )
        )
        count = ledger.repeat(slot.tool.name, slot.bound.arguments)
        if max_repeats and count >= max_repeats:
            slot.feedback = _repeated_call_text(slot.tool.name, count)
            slot.over_repeat_limit = count > max_repeats
            slot.bound = None
            events.append(_rejected(slot, step, "repeated_call"))
    for index, bad in enumerate(malformed, start=len(calls)):
        call_id = f"call_{run_id[:8]}_{step}_{index}"
        slot = Slot(
            index=index,
            call=ToolCall(name=bad.name or "", arguments={}, id=call_id),
            tool=_lookup(toolbox, bad.name),
            counts_as_failure=True,
        )
        slots.append(slot)
        if bad.name and slot.tool is None:
            # The parser knows the tool names and flags a call to any other as malformed;
            # to the model and in the events it is an unknown tool, whichever layer saw it,
            # with its arguments as the model wrote them.
            slot.call = replace(slot.call, arguments=_written_arguments(bad))
            unknown = UnknownToolError(bad.name, toolbox.callable_names)
            slot.feedback = _unknown_tool_text(unknown)
            events.append(_rejected(slot, step, "unknown_tool"))
        else:
            slot.feedback = _malformed_text(bad)
            events.append(
                CallMalformed(
                    step=step, id=call_id, text=bad.text, reason=bad.reason, name=bad.name
                )
            )
    return slots, events


def _written_arguments(bad: llama3.MalformedCall) -> Mapping[str, Any]:
    """The arguments of a call to an unknown tool, read without the tool list (none if they
    cannot be read)."""
    for call in llama3.parse_completion(bad.text).tool_calls:
        if call.name == bad.name:
            return call.arguments
    return {}


def _rejected(slot: Slot, step: int, reason: RejectReason) -> ToolCallRejected:
    assert slot.feedback is not None
    return ToolCallRejected(
        step=step,
        index=slot.index,
        id=slot.call.id,
        name=slot.call.name,
        arguments=slot.call.arguments,
        reason=reason,
        error=slot.feedback,
    )


def started(slots: Sequence[Slot], *, step: int) -> list[Event]:
    return [
        ToolCallStarted(
            step=step,
            index=s.index,
            id=s.call.id,
            name=s.call.name,
            tool=s.tool.name,
            arguments=s.bound.arguments,
        )
        for s in slots
        if s.tool is not None and s.bound is not None
    ]


async def execute(
    slots: Sequence[Slot], *, context: RunContext[Any], deadline: float, trace: RunTrace
) -> bool:
    """Run the valid calls concurrently; False when the run's deadline stopped them."""
    runnable = _runnable(slots)

    async def run_one(slot: Slot) -> None:
        assert slot.tool is not None
        assert slot.bound is not None
        with trace.tool(slot):
            slot.result = await slot.tool.execute(
                slot.bound, context=context, on_abandon=slot.abandon
            )

    async def run_all() -> None:
        if len(runnable) == 1:
            await run_one(runnable[0])
        elif runnable:
            async with anyio.create_task_group() as group:
                for slot in runnable:
                    group.start_soon(run_one, slot)

    if deadline == math.inf:
        # No deadline to stop them: no scope, and every call that returns has its result.
        await run_all()
        return True
    began = anyio.current_time()
    with anyio.CancelScope(deadline=deadline) as scope:
        await run_all()
    for slot in runnable:
        if slot.result is None:
            slot.elapsed = anyio.current_time() - began
    return not scope.cancelled_caught


class Running:
    """The valid calls of a step, started in a task group the caller owns.

    So they go on while the run's generator is suspended at a `yield` (it must never hold a task
    group or cancel scope across one), and each is reported as it ends. Each call runs under a
    cancel scope of the run's (with the run's deadline): `stop()` cancels what still runs and
    waits until it has stopped, so a run closed or cancelled leaves nothing behind.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        *,
        context: RunContext[Any],
        deadline: float,
        group: TaskGroup,
        trace: RunTrace,
    ) -> None:
        self.slots = _runnable(slots)
        self._context = context
        self._trace = trace
        self._began = anyio.current_time()
        # Room for every call: a finishing call never waits for the run to read it.
        self._send, self._receive = anyio.create_memory_object_stream[Slot](len(self.slots))
        self._scopes = [anyio.CancelScope(deadline=deadline) for _ in self.slots]
        self._left = len(self.slots)
        self._all_done = anyio.Event()
        if not self.slots:
            self._all_done.set()
        for slot, scope in zip(self.slots, self._scopes, strict=True):
            group.start_soon(self._run, slot, scope)

    async def _run(self, slot: Slot, scope: anyio.CancelScope) -> None:
        assert slot.tool is not None
        assert slot.bound is not None
        try:
            with scope, self._trace.tool(slot):
                slot.result = await slot.tool.execute(
                    slot.bound, context=self._context, on_abandon=slot.abandon
                )
        finally:
            if slot.result is None:
                slot.elapsed = anyio.current_time() - self._began
                # Stopped by something else than the run (the caller's group was cancelled).
                slot.cancelled = not scope.cancel_called
            self._send.send_nowait(slot)
            self._left -= 1
            if not self._left:
                self._all_done.set()

    async def next(self) -> Slot:
        """The next call to end (call once per call in `slots`)."""
        return await self._receive.receive()

    @property
    def in_time(self) -> bool:
        """False when the run's deadline stopped a call."""
        return not any(scope.cancelled_caught for scope in self._scopes)

    async def stop(self) -> None:
        """Cancel the calls still running and wait until every one has ended."""
        for scope in self._scopes:
            scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._all_done.wait()
        self._send.close()
        self._receive.close()


def _runnable(slots: Sequence[Slot]) -> list[Slot]:
    return [s for s in slots if s.tool is not None and s.bound is not None]


def finished(slot: Slot, *, step: int) -> ToolCallFinished:
    """The `ToolCallFinished` of a call that ran (or was stopped)."""
    assert slot.tool is not None
    return _finished(slot, step, slot.result, _result_text(slot))


def _result_text(slot: Slot) -> str:
    assert slot.tool is not None
    if slot.result is not None:
        return slot.result.text
    if slot.cancelled:
        return _cancelled_text(slot.tool.name, abandoned=slot.abandoned)
    return _run_time_limit_text(slot.tool.name, abandoned=slot.abandoned)


def settle(
    slots: Sequence[Slot], *, step: int, ledger: Ledger
) -> tuple[list[Message], list[Event], RunStatus | None]:
    """The step's tool messages in the model's order, the finished events not sent yet, the
    retry counts updated, and the status that ends the run if a budget was exceeded."""
    messages: list[Message] = []
    events: list[Event] = []
    failed: dict[str, int | None] = {}  # budget key -> the tool's own retries
    for slot in slots:
        if slot.feedback is not None:
            text = slot.feedback
            if slot.counts_as_failure:
                key = slot.tool.name if slot.tool else UNATTRIBUTED
                failed[key] = slot.tool.retries if slot.tool else None
        else:
            assert slot.tool is not None
            result = slot.result
            text = _result_text(slot)
            if not slot.announced:
                events.append(_finished(slot, step, result, text))
            if result is None or result.is_error:
                failed[slot.tool.name] = slot.tool.retries
            else:
                ledger.succeed(slot.tool.name)
        messages.append(
            Message(role="tool", content=text, tool_call_id=slot.call.id, name=slot.tool_name)
        )
    if UNATTRIBUTED not in failed:
        ledger.succeed(UNATTRIBUTED)
    status: RunStatus | None = None
    if any(s.over_repeat_limit for s in slots):
        status = "repeat_limit"
    for key, retries in failed.items():
        if ledger.fail(key) > ledger.budget(retries):
            status = "retry_limit"
    return messages, events, status


def interrupted(slots: Sequence[Slot]) -> list[Message]:
    """The tool messages of a step whose run was cancelled before its calls were settled."""
    return [
        Message(
            role="tool",
            content=_interrupted_text(slot),
            tool_call_id=slot.call.id,
            name=slot.tool_name,
        )
        for slot in slots
    ]


def _interrupted_text(slot: Slot) -> str:
    if slot.feedback is not None:
        return slot.feedback
    if slot.result is not None:
        return slot.result.text
    return _cancelled_text(slot.tool_name or slot.call.name, abandoned=slot.abandoned)


def _finished(slot: Slot, step: int, result: ToolResult | None, text: str) -> ToolCallFinished:
    assert slot.tool is not None
    return ToolCallFinished(
        step=step,
        index=slot.index,
        id=slot.call.id,
        name=slot.call.name,
        tool=slot.tool.name,
        result=text,
        is_error=result.is_error if result else True,
        duration=result.duration if result else slot.elapsed,
        truncated=result.truncated if result else False,
        exception=result.exception if result else None,
        traceback=result.traceback if result else None,
    )


def _lookup(toolbox: Toolbox, name: str | None) -> Tool | None:
    if not name:
        return None
    try:
        return toolbox.resolve(name)
    except UnknownToolError:
        return None


# --- what the model is told, as a call's `ipython` result, when its call cannot run -------------
#
# Short and precise: the offending tool or field, and what to do instead.


def _unknown_tool_text(exc: UnknownToolError) -> str:
    return f"Error: {exc}. Call one of those tools, or answer without a tool."


def _invalid_arguments_text(tool: str, exc: InvalidArgumentsError) -> str:
    return (
        f"Error: invalid arguments for {tool}:\n{exc}\n"
        f"Call {tool} again with arguments that match its parameters."
    )


def _repeated_call_text(tool: str, count: int) -> str:
    return (
        f"Error: this is call number {count} to {tool} with exactly these arguments; it was not "
        "run again and its result would not change. Use the results you already have, change "
        "the arguments, or answer."
    )


def _malformed_text(call: llama3.MalformedCall) -> str:
    reason = call.reason.rstrip(".")
    return (
        f"Error: your tool call could not be used: {reason}. "
        "Write the whole call again, complete and in the format described above."
    )


def _run_time_limit_text(tool: str, *, abandoned: bool) -> str:
    if abandoned:
        return (
            f"Error: {tool} did not finish before the run's time limit; it ignored being "
            "stopped and was abandoned."
        )
    return f"Error: {tool} did not finish before the run's time limit; it was stopped."


def _cancelled_text(tool: str, *, abandoned: bool) -> str:
    if abandoned:
        return f"Error: the run was cancelled before {tool} finished; {tool} was abandoned."
    return f"Error: the run was cancelled before {tool} finished."
