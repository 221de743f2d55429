"""The limits that end a run: steps, retries, repeats, time and tokens."""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import ConfigError

# Failures in a row allowed for calls that name no known tool, when `Limits.max_retries` is None.
UNATTRIBUTED_RETRIES = 3


@dataclass(frozen=True, kw_only=True)
class Limits:
    """When a run must stop even though the model has not answered.

    Every limit ends the run with its own `RunResult.status` and keeps what happened so far.

    - `max_steps`: model requests per run (`"step_limit"`). The calls of the last step still
      run, so their results are in the conversation and a later run can continue it.
    - `max_retries`: failed calls in a row that a tool tolerates (invalid arguments, an error
      it raised, a repeated call); one more ends the run (`"retry_limit"`). A success resets the
      count. `None` uses each tool's own `Tool.retries`. Malformed calls and calls to unknown
      tools share one budget of `max_retries` (or `UNATTRIBUTED_RETRIES` when `None`).
    - `max_repeats`: the Nth identical call (same tool, same validated arguments) in a run is
      not run; the model is told to use the result it has. Another identical call after that
      ends the run (`"repeat_limit"`). `0` turns the check off.
    - `run_timeout`: seconds for the whole run, tools included (`"timeout"`). `None`: no limit
      beyond the backend's and tools' own deadlines.
    - `max_tokens`: tokens the server evaluates over the run, `prompt_eval_count + eval_count`
      summed over steps (`"token_budget"`). With a warm prompt cache only new tokens count.
    """

    max_steps: int = 10
    max_retries: int | None = None
    max_repeats: int = 3
    run_timeout: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.max_steps < 1:
            problems.append(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_retries is not None and self.max_retries < 0:
            problems.append(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.max_repeats < 0:
            problems.append(f"max_repeats must be 0 (off) or more, got {self.max_repeats}")
        if self.run_timeout is not None and self.run_timeout <= 0:
            problems.append(f"run_timeout must be positive (seconds), got {self.run_timeout}")
        if self.max_tokens is not None and self.max_tokens < 1:
            problems.append(f"max_tokens must be at least 1, got {self.max_tokens}")
        if problems:
            raise ConfigError("invalid limits: " + "; ".join(problems), problems=problems)
