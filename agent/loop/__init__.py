"""The agent loop: `Agent`, its runs, their events, limits, usage and results."""

from agent.loop._agent import Agent
from agent.loop._events import (
    Event,
    MalformedCall,
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
from agent.loop._limits import Limits
from agent.loop._result import RunResult, RunStatus, message_to_dict
from agent.loop._stream import RunStream
from agent.loop._usage import RunUsage

__all__ = [
    "Agent",
    "Event",
    "Limits",
    "MalformedCall",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "StepFinished",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallParsed",
    "ToolCallRejected",
    "ToolCallStarted",
    "ToolCallValidated",
    "event_to_dict",
    "message_to_dict",
]
