"""A run's mutable state: the conversation so far, usage, and the retry and repeat counts."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from agent.backends import Done, DoneReason
from agent.errors import RunError
from agent.llama3 import Family, Message

from ._limits import UNATTRIBUTED_RETRIES, Limits
from ._result import RunResult, RunStatus
from ._usage import RunUsage

# The retry-budget key for calls that name no known tool (unknown tools, garbled calls).
UNATTRIBUTED = ""


class Ledger:
    """Failures in a row per tool and how often each identical call was made (one per run)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._failures: dict[str, int] = {}
        self._seen: dict[tuple[str, str], int] = {}

    def budget(self, tool_retries: int | None) -> int:
        """The retry budget of a tool (`None`: a call that names no known tool)."""
        if self._limits.max_retries is not None:
            return self._limits.max_retries
        return UNATTRIBUTED_RETRIES if tool_retries is None else tool_retries

    def fail(self, key: str) -> int:
        """Count one more failure for `key`; returns the failures in a row."""
        self._failures[key] = self._failures.get(key, 0) + 1
        return self._failures[key]

    def succeed(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def repeat(self, tool: str, arguments: Mapping[str, Any]) -> int:
        """Count a call; returns how many times this exact call has now been made in the run."""
        key = (tool, json.dumps(arguments, sort_keys=True, default=repr))
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key]


class RunState:
    """Everything a run has done so far; `result()` snapshots it at any moment."""

    def __init__(
        self,
        *,
        run_id: str,
        model: str,
        messages: list[Message],
        new_from: int,
        limits: Limits,
        today: datetime.date,
        history: int = 0,
    ) -> None:
        self.run_id = run_id
        self.model = model
        self.messages = messages
        self.new_from = new_from
        self.history = history  # how many messages came from `history=`
        self.family: Family | None = None  # the prompt family the server reported
        self.limits = limits
        self.today = today
        self.ledger = Ledger(limits)
        self.usage = RunUsage()
        self.steps = 0
        self.done_reason: DoneReason | None = None
        self.status: RunStatus | None = None
        self.answer = ""
        self.exception: RunError | None = None
        self.warnings: list[str] = []

    def record_step(self, done: Done) -> None:
        self.steps += 1
        self.usage = self.usage.add(done.usage)
        self.done_reason = done.done_reason
        self.warnings.extend(done.warnings)

    def finish(self, status: RunStatus, *, answer: str = "") -> None:
        self.status = status
        self.answer = answer

    def fail(self, exc: RunError) -> None:
        self.status = "error"
        self.exception = exc

    @property
    def finished(self) -> bool:
        return self.status is not None

    def result(self) -> RunResult:
        """The result so far; a run that never reached an end reads as `"cancelled"`."""
        return RunResult(
            answer=self.answer,
            messages=tuple(self.messages),
            status=self.status or "cancelled",
            usage=self.usage,
            steps=self.steps,
            done_reason=self.done_reason,
            error=str(self.exception) if self.exception else None,
            exception=self.exception,
            run_id=self.run_id,
            model=self.model,
            today=self.today,
            new_from=self.new_from,
            warnings=tuple(self.warnings),
            family=self.family,
        )
