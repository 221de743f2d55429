"""The agent loop: `Agent`, its runs, their events, limits, usage and results.

Modules: `_agent` (the `Agent`), `_run` (one run: its state, the loop, `RunStream`), `_calls` (a
step's calls: validated, run, fed back), `_events` (what a run yields, and the approval a call
may wait for), `_result` (`RunResult`, `RunStatus`, `RunUsage`, `Limits`), `_sessions`
(conversations kept under a name: `Store`, `SQLiteStore`) and `_tracing` (the run's OpenTelemetry
spans).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from agent.loop._agent import Agent
from agent.loop._events import (
    ApprovalRequested,
    Approver,
    CallMalformed,
    Decision,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    TextDelta,
    ToolCallFinished,
    ToolCallParsed,
    ToolCallRejected,
    ToolCallStarted,
    ToolCallValidated,
    event_to_dict,
)
from agent.loop._result import Limits, RunResult, RunStatus, RunUsage, message_to_dict
from agent.loop._run import RunStream
from agent.loop._sessions import (
    Session,
    SessionInfo,
    SQLiteStore,
    Store,
    default_store_path,
)

__all__ = [
    "Agent",
    "ApprovalRequested",
    "Approver",
    "CallMalformed",
    "Decision",
    "Event",
    "Limits",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "SQLiteStore",
    "Session",
    "SessionInfo",
    "StepFinished",
    "Store",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallParsed",
    "ToolCallRejected",
    "ToolCallStarted",
    "ToolCallValidated",
    "default_store_path",
    "event_to_dict",
    "message_to_dict",
]

if TYPE_CHECKING:
    MalformedCall = CallMalformed  # deprecated; at run time `__getattr__` serves it, warning
else:

    def __getattr__(name: str) -> Any:
        if name == "MalformedCall":  # the event's name until 0.1; goes in the next release
            warnings.warn(
                "agent.loop.MalformedCall is deprecated: use agent.loop.CallMalformed (the event "
                "was renamed so it is not confused with agent.llama3.MalformedCall, a parse "
                "result); the old name goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return CallMalformed
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
