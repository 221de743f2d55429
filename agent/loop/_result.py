"""What a run produced and what bounds it: `RunResult`, `RunStatus`, `RunUsage`, `Limits`.

Also the neutral dict forms (`RunResult.to_dict`, `message_to_dict`) that `--json`, services and
`event_to_dict` emit.
"""

from __future__ import annotations

import datetime
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt

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
    The same type is a config's `limits:`: the field docstrings and bounds below are the
    config's too (see `agent.config`), and are checked here for Python callers as well.
    """

    max_steps: Annotated[int, Ge(1)] = 10
    """Model requests per run (`step_limit`). The calls of the last step still run, so their
    results are in the conversation and a later run can continue it."""
    max_retries: Annotated[int, Ge(0)] | None = None
    """Failed calls in a row a tool tolerates before the run ends (`retry_limit`): invalid
    arguments, an error it raised, a repeated call; a success resets the count. Unset: each
    tool's own `retries`. Malformed calls and calls to unknown tools share one budget of
    `max_retries` (3 when unset)."""
    max_repeats: Annotated[int, Ge(0)] = 3
    """The Nth identical call (same tool, same validated arguments) is not run, and the model is
    told to use the result it has; one more ends the run (`repeat_limit`). 0: off."""
    run_timeout: Annotated[float, Gt(0)] | None = None
    """Seconds for the whole run, tools included (`timeout`). Unset: no limit beyond the
    backend's and the tools' own deadlines."""
    max_tokens: Annotated[int, Ge(1)] | None = None
    """Tokens the server may evaluate over the run, prompt and answer (`token_budget`); with a
    warm prompt cache only new tokens count."""

    def __post_init__(self) -> None:
        # Every broken bound is named at once (a config reports them with file:line instead).
        problems = [
            f"{item.name} {problem}, got {getattr(self, item.name)}"
            for item in fields(self)
            if (problem := _broken(_LIMIT_HINTS[item.name], getattr(self, item.name))) is not None
        ]
        if problems:
            raise ConfigError("invalid limits: " + "; ".join(problems), problems=problems)


_LIMIT_HINTS = typing.get_type_hints(Limits, include_extras=True)


def _broken(hint: Any, value: Any) -> str | None:
    """What `value` breaks of the `Ge`/`Gt` bounds in `hint` (`Annotated[int, Ge(1)] | None`)."""
    if value is None:
        return None
    for arm in typing.get_args(hint) if typing.get_origin(hint) is not Annotated else (hint,):
        for bound in typing.get_args(arm)[1:] if typing.get_origin(arm) is Annotated else ():
            if isinstance(bound, Ge) and not value >= bound.ge:
                return f"must be at least {bound.ge}"
            if isinstance(bound, Gt) and not value > bound.gt:
                return "must be positive" if bound.gt == 0 else f"must be above {bound.gt}"
    return None


# --- usage ----------------------------------------------------------------------------------------


def _plus(total: Usage, usage: Usage) -> Usage:
    """`total` with one more request: counts and durations added, `num_ctx` the larger (spelled
    out: a step does this; `tests/loop/test_values.py` checks that no field is left out)."""
    return Usage(
        prompt_eval_count=total.prompt_eval_count + usage.prompt_eval_count,
        eval_count=total.eval_count + usage.eval_count,
        total_duration=total.total_duration + usage.total_duration,
        load_duration=total.load_duration + usage.load_duration,
        prompt_eval_duration=total.prompt_eval_duration + usage.prompt_eval_duration,
        eval_duration=total.eval_duration + usage.eval_duration,
        prompt_tokens_sent=total.prompt_tokens_sent + usage.prompt_tokens_sent,
        num_ctx=max(total.num_ctx, usage.num_ctx),
        cached_tokens=total.cached_tokens + usage.cached_tokens,
    )


def _total(steps: Iterable[Usage]) -> Usage:
    total = Usage()
    for usage in steps:
        total = _plus(total, usage)
    return total


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
        """A copy with one more request (its total updated, not summed again: runs add a step
        at a time)."""
        grown = object.__new__(RunUsage)
        object.__setattr__(grown, "steps", (*self.steps, usage))
        object.__setattr__(grown, "total", _plus(self.total, usage))
        return grown

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
