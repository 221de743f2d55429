"""The command's exit codes, in one place: what each means and which failure gives it."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from agent.errors import (
    ConfigError,
    DeveloperError,
    ModelNotFoundError,
    OllamaUnreachableError,
    SandboxUnavailableError,
)

if TYPE_CHECKING:
    from agent.loop import RunResult

__all__ = ["EXIT_CODES_HELP", "ExitCode", "exit_code_for_error", "exit_code_for_result"]


class ExitCode(IntEnum):
    """`llama-agent`'s exit status."""

    OK = 0
    """The model answered (or the check passed)."""
    ERROR = 1
    """Any other failure: a broken stream, a deadline talking to Ollama, a context overflow."""
    USAGE = 2
    """The command line is wrong (an unknown option, a missing argument)."""
    CONFIG = 3
    """The config is invalid, a custom tool does not import, or the sandbox is unavailable."""
    OLLAMA_UNREACHABLE = 4
    """Nothing answers at the Ollama URL."""
    MODEL_MISSING = 5
    """The model is not pulled on the server (pass --pull)."""
    LIMIT = 6
    """The run stopped at a limit before an answer: steps, retries, repeats, run timeout,
    token budget, or an answer cut off at `num_predict`."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""


EXIT_CODES_HELP = (
    "Exit codes: "
    + ", ".join(
        f"{code.value} {label}"
        for code, label in [
            (ExitCode.OK, "answered"),
            (ExitCode.ERROR, "other error"),
            (ExitCode.USAGE, "bad usage"),
            (ExitCode.CONFIG, "config error"),
            (ExitCode.OLLAMA_UNREACHABLE, "Ollama unreachable"),
            (ExitCode.MODEL_MISSING, "model missing"),
            (ExitCode.LIMIT, "limit reached"),
            (ExitCode.INTERRUPTED, "interrupted"),
        ]
    )
    + "."
)


def exit_code_for_error(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ended the command."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, ConfigError | SandboxUnavailableError | DeveloperError):
        return ExitCode.CONFIG
    if isinstance(exc, OllamaUnreachableError):
        return ExitCode.OLLAMA_UNREACHABLE
    if isinstance(exc, ModelNotFoundError):
        return ExitCode.MODEL_MISSING
    return ExitCode.ERROR


def exit_code_for_result(result: RunResult) -> ExitCode:
    """The exit code for how a run ended."""
    if result.status == "answered":
        return ExitCode.OK
    if result.status == "cancelled":
        return ExitCode.INTERRUPTED
    if result.status == "error":
        return exit_code_for_error(result.exception) if result.exception else ExitCode.ERROR
    return ExitCode.LIMIT
