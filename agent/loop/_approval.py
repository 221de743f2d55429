"""Approval of calls: a tool made with `approval=True` runs only once someone says yes.

For each such call the run yields an `ApprovalRequested` event, and the decision comes:

- from the event itself, while streaming: the reader calls `event.approve()`,
  `event.approve(always=True)` or `event.deny(reason)` before it reads the next event (awaiting
  whatever it needs in between: a person's click, a policy service), the run being suspended
  at that event meanwhile;
- else from the agent's `approve` callback (`Agent(approve=...)`), sync or async, given the
  event and returning `"yes"`, `"no"` or `"always"` (or True / False). A sync callback runs in a
  worker thread, so it may block (prompting a person); an async one runs in the run's task;
- else nobody decided (`Agent.run()` with no callback, a stream passed through unread): the call
  is refused and the model told. A reader that ignores the event never hangs the run.

`"always"` approves the tool's later calls in the same run without asking again (a callback that
should remember across runs keeps its own record, as the CLI's prompt does). A refused call never
runs: its result, for the model, says it was not approved and why; the run goes on.

The time taken to decide counts against the run's deadline (`limits.run_timeout`): a callback
still deciding when it passes is stopped, and a run whose deadline passed while its reader was
deciding ends with status `"timeout"` before the call runs. Cancelling or closing the run while a
callback decides stops it at once (a sync callback's thread is abandoned, left to return on its
own).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

import anyio

from agent.errors import DeveloperError

if TYPE_CHECKING:
    from ._calls import Slot
    from ._events import ApprovalRequested

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
