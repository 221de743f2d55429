"""What `Agent.stream()` yields: one frozen dataclass per thing that happens in a run.

Each event has a `type` string (`"text_delta"`...) so it can go out as JSON or SSE with
`event_to_dict`. The first event is `RunStarted`, the last `RunFinished`. Within a step:

1. `TextDelta`s as the completion streams in (text that may still turn out to be a call is
   held back until it cannot; the text of a call, well formed or botched, is never shown);
2. for each call, in the model's order: `ToolCallParsed`, then `ToolCallValidated` or
   `ToolCallRejected` (unknown tool, invalid arguments), or both for a repeated call;
3. `CallMalformed` for each botched call (a call to a tool that does not exist is reported as
   `ToolCallRejected` with reason `"unknown_tool"`, however the model wrote it);
4. `ApprovalRequested` for each valid call to a tool made with `approval=True`, one at a time:
   the run waits for the decision (see `agent.loop._events`); a refused call then gets a
   `ToolCallRejected` with reason `"denied"`;
5. `ToolCallStarted` for every valid (and approved) call: they all run at once;
6. `ToolCallFinished` for each: in the model's order once all are done; or, when the stream
   was given a `task_group` (`Agent.stream(..., task_group=tg)`), each as soon as its call ends;
7. `StepFinished`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio

from agent._frozen import stored_at_once
from agent.backends import DoneReason, Usage
from agent.errors import DeveloperError

from ._result import RunResult, plain_data

if TYPE_CHECKING:
    from ._calls import Slot


RejectReason = Literal["unknown_tool", "invalid_arguments", "repeated_call", "denied"]


# --- approval: what a tool that needs it waits for -----------------------------------------------

Decision = Literal["yes", "no", "always"]
Answer: TypeAlias = Decision | bool | None
Approver: TypeAlias = Callable[["ApprovalRequested"], Answer | Awaitable[Answer]]
"""`Agent(approve=...)`: given the request, says yes, no or always (None: it decided on the
event with `approve()` / `deny()`)."""

NOBODY_DECIDED = (
    "it needs approval and nobody approved it (the program gave the agent no `approve` callback "
    "and did not decide on the event)"
)


class PendingApproval:
    """The decision on an `ApprovalRequested` event (set once; later calls are ignored).

    Plain attributes: a sync callback may decide from its worker thread, and the run reads them
    once the callback has returned.
    """

    __slots__ = ("decision", "reason")

    def __init__(self) -> None:
        self.decision: Decision | None = None
        self.reason: str | None = None

    def decide(self, decision: Decision, reason: str | None = None) -> None:
        if self.decision is None:
            self.decision, self.reason = decision, reason


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What became of a request: approved or not, and the reason given for a refusal."""

    decision: Decision
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.decision != "no"


def needs_approval(slot: Slot, always: set[str]) -> bool:
    """A valid call to a tool that wants approval, not approved for the rest of the run."""
    return (
        slot.tool is not None
        and slot.bound is not None
        and slot.tool.approval
        and slot.tool.name not in always
    )


async def decide(request: ApprovalRequested, approve: Approver | None) -> Verdict:
    """The request's decision: made on the event, else asked of `approve`, else a refusal."""
    pending = request.pending
    if pending.decision is None and approve is not None:
        answer = await _ask(approve, request)
        if answer is not None:
            pending.decide(_decision(answer), None)
        elif pending.decision is None:
            raise DeveloperError(
                f"the approve callback returned None for the call to {request.tool} without "
                "deciding on the event; return 'yes', 'no' or 'always'"
            )
    pending.decide("no", NOBODY_DECIDED)  # a no-op once decided
    assert pending.decision is not None
    return Verdict(decision=pending.decision, reason=pending.reason)


async def _ask(approve: Approver, request: ApprovalRequested) -> Answer:
    if _is_async(approve):
        answer = approve(request)
    else:
        # A sync callback may block (input()): a worker thread, abandoned if the run is stopped.
        answer = await anyio.to_thread.run_sync(approve, request, abandon_on_cancel=True)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def _is_async(function: Callable[..., object]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - a callable object's method
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _decision(answer: object) -> Decision:
    if answer is True:
        return "yes"
    if answer is False:
        return "no"
    if answer in ("yes", "no", "always"):
        return answer
    raise DeveloperError(
        f"the approve callback returned {answer!r}; return 'yes', 'no', 'always', True or False"
    )


def denied_text(tool: str, reason: str | None) -> str:
    """What the model is told, as the call's result, when its call was refused."""
    why = f": {reason.strip().rstrip('.')}" if reason and reason.strip() else ""
    return (
        f"Error: the call to {tool} was not approved, so it did not run{why}. Do not repeat it; "
        "go on without it, or answer and say what you could not do."
    )


# --- events --------------------------------------------------------------------------------------


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class RunStarted:
    """A run began. `history` is how many messages it continues from: those given as
    `history=` (0 for a fresh run). The agent's system prompt is not counted; it is not
    history (`RunResult.new_from`, the task's index in `messages`, does count it)."""

    type: Literal["run_started"] = field(default="run_started", init=False)
    run_id: str
    model: str
    task: str
    history: int = 0


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class TextDelta:
    """Answer text as it streams in. Text that may turn out to be a tool call is held back, and
    a call's text (even a botched one's: see `CallMalformed.text`) is not answer text."""

    type: Literal["text_delta"] = field(default="text_delta", init=False)
    step: int
    text: str


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCallParsed:
    """The model made a call (`index` is its position in the step, from 0)."""

    type: Literal["tool_call_parsed"] = field(default="tool_call_parsed", init=False)
    step: int
    index: int
    id: str
    name: str
    arguments: Mapping[str, Any]


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCallValidated:
    """The call matches its tool's schema. `arguments` are after coercion; `coercions` lists
    each slip that was fixed (`"10"` taken as an integer...)."""

    type: Literal["tool_call_validated"] = field(default="tool_call_validated", init=False)
    step: int
    index: int
    id: str
    name: str
    tool: str
    arguments: Mapping[str, Any]
    coercions: tuple[str, ...] = ()


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCallRejected:
    """The call will not run; `error` is what the model is told as the call's result."""

    type: Literal["tool_call_rejected"] = field(default="tool_call_rejected", init=False)
    step: int
    index: int
    id: str
    name: str
    arguments: Mapping[str, Any]
    reason: RejectReason
    error: str


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class CallMalformed:
    """Output meant as a call that cannot be used (cut off, garbled); the model is told why.

    `text` is what the model wrote, `reason` what is wrong with it (from the parser's
    `agent.llama3.MalformedCall`). Its `type` stays `"malformed_call"`, the name it had before
    the class was renamed, so JSON and SSE consumers see no change.
    """

    type: Literal["malformed_call"] = field(default="malformed_call", init=False)
    step: int
    id: str
    text: str
    reason: str
    name: str | None = None


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ApprovalRequested:
    """A valid call to a tool that needs approval; the run waits until it is decided.

    While streaming, decide on the event before reading the next one: `approve()`,
    `approve(always=True)` (the tool's later calls in this run need no approval) or
    `deny(reason)` (the model is told the reason). Without a decision on the event the agent's
    `approve` callback is asked; with neither (`Agent.run()` with no callback, a stream passed on
    unread) the call is refused. A refused call gets a `ToolCallRejected` with reason `"denied"`
    and never runs.
    """

    type: Literal["approval_requested"] = field(default="approval_requested", init=False)
    step: int
    index: int
    id: str
    name: str
    tool: str
    arguments: Mapping[str, Any]
    pending: PendingApproval = field(default_factory=PendingApproval, repr=False, compare=False)

    def approve(self, *, always: bool = False) -> None:
        """Let the call run (`always`: and the tool's later calls in this run, unasked)."""
        self.pending.decide("always" if always else "yes")

    def deny(self, reason: str | None = None) -> None:
        """Refuse the call: it does not run, and the model is told `reason`."""
        self.pending.decide("no", reason)

    @property
    def decision(self) -> Literal["yes", "no", "always"] | None:
        """The decision so far (None: still waiting)."""
        return self.pending.decision


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCallStarted:
    """A validated call started running (all the calls of a step run concurrently)."""

    type: Literal["tool_call_started"] = field(default="tool_call_started", init=False)
    step: int
    index: int
    id: str
    name: str
    tool: str
    arguments: Mapping[str, Any]


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCallFinished:
    """A call ended. `result` is the text the model sees; `is_error` when the tool raised or timed
    out (then `exception` and `traceback` say what happened). `duration` in seconds."""

    type: Literal["tool_call_finished"] = field(default="tool_call_finished", init=False)
    step: int
    index: int
    id: str
    name: str
    tool: str
    result: str
    is_error: bool
    duration: float
    truncated: bool = False
    exception: BaseException | None = field(default=None, compare=False)
    traceback: str | None = None


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class StepFinished:
    """A model request and its calls are done. `usage` is what the server reported for it;
    `warnings` what the backend noticed (a stream resumed, a prompt the server cut short)."""

    type: Literal["step_finished"] = field(default="step_finished", init=False)
    step: int
    usage: Usage
    done_reason: DoneReason
    calls: int = 0
    malformed: int = 0
    warnings: tuple[str, ...] = ()


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class RunFinished:
    """The run ended; `result.status` says how."""

    type: Literal["run_finished"] = field(default="run_finished", init=False)
    result: RunResult


Event = (
    RunStarted
    | TextDelta
    | ToolCallParsed
    | ToolCallValidated
    | ToolCallRejected
    | CallMalformed
    | ApprovalRequested
    | ToolCallStarted
    | ToolCallFinished
    | StepFinished
    | RunFinished
)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data, `type` first (for `--json` lines and SSE `data:`)."""
    if isinstance(event, RunFinished):
        return {"type": event.type, "result": event.result.to_dict()}
    data: dict[str, Any] = {}
    for name in _data_fields(type(event)):
        value = getattr(event, name)
        if type(value) in _AS_IS:
            pass
        elif isinstance(value, BaseException):
            value = f"{type(value).__name__}: {value}"
        elif isinstance(value, Usage):
            value = dataclasses.asdict(value)
        else:
            value = plain_data(value)
        data[name] = value
    return data


_AS_IS = frozenset({str, int, bool, type(None)})  # what plain_data returns unchanged


_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _data_fields(cls: type[Any]) -> tuple[str, ...]:
    """An event class's fields, in order, but an approval's decision (for the program: not
    data); read once per class."""
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "pending")
        _FIELDS[cls] = names
    return names
