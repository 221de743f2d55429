"""The text the model sees after its code ran.

The shape follows Meta's own code-interpreter tool (llama-stack): a status line, then `[stdout]`
and `[stderr]` blocks, so Llama reads it the way it was trained to.
"""

from __future__ import annotations

import signal

from ._types import SandboxLimits, SandboxResult

__all__ = ["format_result"]

_HEAD = 6000
_TAIL = 2000


def _status(result: SandboxResult, limits: SandboxLimits) -> str:
    match result.stopped:
        case "timeout":
            return f"stopped: the wall-clock limit of {limits.wall_seconds:g} s was reached"
        case "cpu":
            return f"stopped: the CPU-time limit of {limits.cpu_seconds} s was reached"
        case "memory":
            return f"stopped: out of memory (limit {limits.budget()[0] >> 20} MiB per process)"
        case "output":
            return (
                f"stopped: the program printed more than {limits.output_bytes >> 10} KiB; "
                "print less (a summary, or the first rows)"
            )
        case "signal" if result.signal == signal.SIGKILL:
            return (
                "stopped: killed by SIGKILL (the CPU-time hard limit, or the host ran out of "
                "memory)"
            )
        case "signal":
            return f"stopped: killed by {_signal_name(result.signal)}"
    if result.exit_code == 0:
        return "completed"
    return f"completed with exit status {result.exit_code}"


def _signal_name(number: int | None) -> str:
    try:
        return signal.Signals(number or 0).name
    except ValueError:
        return f"signal {number}"


def _clip(text: str) -> str:
    """Long output keeps its head and its tail (where a traceback ends)."""
    if len(text) <= _HEAD + _TAIL:
        return text
    omitted = len(text) - _HEAD - _TAIL
    return f"{text[:_HEAD]}\n[... {omitted} characters omitted ...]\n{text[-_TAIL:]}"


def format_result(result: SandboxResult, limits: SandboxLimits, *, warning: str = "") -> str:
    """Status line, then stdout and stderr blocks (only the non-empty ones)."""
    pieces = [f"warning: {warning}"] if warning else []
    pieces.append(_status(result, limits))
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            pieces += [f"[{name}]", _clip(text).rstrip("\n"), f"[/{name}]"]
    return "\n".join(pieces)
