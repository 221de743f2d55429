"""What a run produced and what bounds it: `RunResult`, `RunStatus`, `RunUsage`, `Limits`.

Also the neutral dict forms (`RunResult.to_dict`, `message_to_dict`) that `--json`, services and
`event_to_dict` emit.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from agent.backends import DoneReason, Usage
from agent.errors import ConfigError
from agent.llama3 import Family, Message, StopReason, ToolCall

# --- limits ---------------------------------------------------------------------------------------

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


# --- usage ----------------------------------------------------------------------------------------

# Fields of `Usage` that describe one request rather than add up over a run.
_NOT_SUMMED = frozenset({"num_ctx"})


def _total(steps: Iterable[Usage]) -> Usage:
    totals: dict[str, int] = {f.name: 0 for f in fields(Usage)}
    for usage in steps:
        for name in totals:
            value = getattr(usage, name)
            totals[name] = max(totals[name], value) if name in _NOT_SUMMED else totals[name] + value
    return Usage(**totals)


@dataclass(frozen=True, kw_only=True)
class RunUsage:
    """What the server reported for each model request of a run, and the sums.

    `steps[i]` is the `Usage` of request `i + 1`: `prompt_eval_count` (prompt tokens the server
    evaluated; with a warm cache only the new ones), `eval_count` (tokens generated), durations in
    nanoseconds as Ollama reports them, `prompt_tokens_sent` (the runtime's own count) and
    `num_ctx` (the context requested). `total` sums them; its `num_ctx` is the largest requested.
    """

    steps: tuple[Usage, ...] = ()
    total: Usage = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", _total(self.steps))

    @property
    def tokens(self) -> int:
        """Tokens the server evaluated over the run: prompt and generated, all steps."""
        return self.total.prompt_eval_count + self.total.eval_count

    def add(self, usage: Usage) -> RunUsage:
        """A copy with one more request."""
        return RunUsage(steps=(*self.steps, usage))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {"steps": [asdict(u) for u in self.steps], "total": asdict(self.total)}


# --- the result -----------------------------------------------------------------------------------

RunStatus = Literal[
    "answered",
    "length",
    "step_limit",
    "retry_limit",
    "repeat_limit",
    "timeout",
    "token_budget",
    "cancelled",
    "error",
]
"""How a run ended.

- `answered`: the model answered without a call; `answer` is its reply.
- `length`: the reply was cut off (`done_reason == "length"`: `num_predict` or the context was
  reached) with no complete call in it; `answer` holds the cut prose. It is not a full answer.
  (A call cut off is not prose: it stays in the last message's `raw`, and `warnings` says so.)
- `step_limit`: `Limits.max_steps` requests were made and the model still wanted tools.
- `retry_limit`: a tool (or the malformed/unknown-call budget) failed more times in a row than
  its retry budget allows.
- `repeat_limit`: the model repeated an identical call again after it was told not to.
- `timeout`: `Limits.run_timeout` passed; the step in flight was dropped.
- `token_budget`: `Limits.max_tokens` was reached.
- `cancelled`: the run's stream was closed or its task cancelled. Only `RunStream.result` can show
  it: a cancelled `Agent.run()` returns nothing, the cancellation propagates.
- `error`: a `RunError` (Ollama unreachable, model missing, stream broken, context overflow...)
  stopped the run; `error` is its message and `exception` the exception itself.

Whatever the status, `messages` holds every completed step, so a later run can continue.
"""

_TERMINAL_OK: frozenset[RunStatus] = frozenset({"answered"})


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """The outcome of one `Agent.run()` (or the last event of `Agent.stream()`).

    - `answer`: the model's reply (the cut text when `status == "length"`, else `""` unless
      answered).
    - `messages`: the whole conversation: the system message, earlier history, the task, every
      assistant turn with its completion exactly as generated (`Message.raw`), and one `tool`
      message per call. Pass the result as `history=` to continue the conversation.
    - `usage`: per request and total token counts and durations.
    - `steps`: how many model requests the run made.
    - `status`, `error`, `exception`: how it ended (see `RunStatus`).
    - `done_reason`: the server's reason for the last completion (`"stop"`, `"length"`...).
    - `warnings`: what the runtime noticed on the way, in order: the server does not list
      tools among the model's capabilities or does not know it as Llama 3.x, a stream resumed
      after it broke off, a prompt evaluated shorter than sent, a call cut off by the length
      limit.
    - `family`: the Llama 3.x release (`"3.1"`, `"3.2"`, `"3.3"`) whose prompt format the run
      used, as the server reported it; `None` when the format came from the model's name.

    An assistant message's `content` is its prose only: the text of a call, well formed or
    botched, is not in it (calls are in `tool_calls`, everything in `raw`).
    """

    answer: str
    messages: tuple[Message, ...]
    status: RunStatus
    usage: RunUsage = field(default_factory=RunUsage)
    steps: int = 0
    done_reason: DoneReason | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    run_id: str = ""
    model: str = ""
    today: datetime.date | None = None
    new_from: int = 0  # index in `messages` of this run's first message (the task)
    warnings: tuple[str, ...] = ()
    family: Family | None = None

    @property
    def ok(self) -> bool:
        """True when the model answered in full."""
        return self.status in _TERMINAL_OK

    @property
    def new_messages(self) -> tuple[Message, ...]:
        """The messages this run added: the task and everything after it."""
        return self.messages[self.new_from :]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (for `--json` and services). Messages use the neutral dict form
        that `Message.from_dict` reads back."""
        return {
            "run_id": self.run_id,
            "model": self.model,
            "status": self.status,
            "answer": self.answer,
            "steps": self.steps,
            "done_reason": self.done_reason,
            "error": self.error,
            "error_type": type(self.exception).__name__ if self.exception else None,
            "today": self.today.isoformat() if self.today else None,
            "usage": self.usage.to_dict(),
            "new_from": self.new_from,
            "warnings": list(self.warnings),
            "family": self.family,
            "messages": [message_to_dict(m) for m in self.messages],
        }


def call_to_dict(call: ToolCall) -> dict[str, Any]:
    """A tool call in the neutral dict form."""
    return {"id": call.id, "name": call.name, "arguments": plain_data(call.arguments)}


def message_to_dict(message: Message) -> dict[str, Any]:
    """A message in the neutral dict form of FORMAT.md §1.1 (`Message.from_dict` reads it)."""
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [call_to_dict(c) for c in message.tool_calls]
    stop: StopReason = message.stop_reason
    if message.role == "assistant":
        data["stop_reason"] = stop
    if message.raw is not None:
        data["raw"] = message.raw
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        data["name"] = message.name
    if message.trusted:
        data["trusted"] = True
    return data


def plain_data(value: Any) -> Any:
    """Mappings and sequences as dicts and lists, so `json.dumps` takes them; a float JSON has
    no number for (a model's `1e999`) as the string JavaScript would print, never `Infinity`."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
    return value
