"""What the model is told, as a call's `ipython` result, when its call cannot run.

Short and precise: the offending tool or field, and what to do instead.
"""

from __future__ import annotations

from agent.errors import InvalidArgumentsError, UnknownToolError
from agent.llama3 import MalformedCall


def unknown_tool(exc: UnknownToolError) -> str:
    return f"Error: {exc}. Call one of those tools, or answer without a tool."


def invalid_arguments(tool: str, exc: InvalidArgumentsError) -> str:
    return (
        f"Error: invalid arguments for {tool}:\n{exc}\n"
        f"Call {tool} again with arguments that match its parameters."
    )


def repeated_call(tool: str, count: int) -> str:
    return (
        f"Error: this is call number {count} to {tool} with exactly these arguments; it was not "
        "run again and its result would not change. Use the results you already have, change "
        "the arguments, or answer."
    )


def malformed(call: MalformedCall) -> str:
    reason = call.reason.rstrip(".")
    return (
        f"Error: your tool call could not be used: {reason}. "
        "Write the whole call again, complete and in the format described above."
    )


def run_time_limit(tool: str) -> str:
    return f"Error: {tool} did not finish before the run's time limit; it was stopped."


def cancelled(tool: str) -> str:
    return f"Error: the run was cancelled before {tool} finished."
