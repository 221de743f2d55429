"""`RunRecord`: one line of a batch's output file (`runs.jsonl`), and `Verdict`, its check.

A record holds everything needed to use the run later without the agent that made it: the
status and answer for a summary, the usage and timing for cost, the check's verdict for
filtering, and `render` + `today` + `messages` for an exact replay: rendering the messages up to
each assistant turn with `agent.llama3.render_prompt(messages, render["tools"],
model=render["model"], today=today, tool_format=..., tool_choice=...)` gives the prompt the run
sent for that step, byte for byte (the fine-tuning export relies on it).

The line format is versioned (`record_version`): a reader refuses a version it does not know
rather than guess at it.
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.errors import DeveloperError
from agent.llama3 import Family, Message, ToolSpec, default_tool_format
from agent.loop import Agent, RunResult, RunStatus, message_to_dict

RECORD_VERSION = 1
"""The version of the line format this module writes and reads."""

TaskId = str | int
"""A task's id as the input line gave it: a string or an integer (never a float or a bool)."""

_STATUSES: frozenset[str] = frozenset(typing.get_args(RunStatus))


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What a check said of a run's answer.

    `passed`: True or False, or None when the run did not answer so nothing was compared.
    `expected`: the input line's `expected` (None for a judge). `reason`: why it failed, or the
    judge's reason (None when there is nothing to say).
    """

    passed: bool | None
    expected: Any = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "expected": self.expected, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        passed = data.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise DeveloperError(f"check.passed must be true, false or null, got {passed!r}")
        reason = data.get("reason")
        return cls(
            passed=passed, expected=data.get("expected"), reason=None if reason is None else reason
        )


def _spec_to_dict(spec: ToolSpec) -> dict[str, Any]:
    """A tool spec in the neutral dict form `ToolSpec.from_dict` (and `render_prompt`) reads."""
    if spec.builtin is not None:
        # The renderer lists a built-in by its built-in name whatever the tool is called.
        return {"type": "builtin", "name": spec.builtin}
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": dict(spec.parameters),
    }


def render_settings(agent: Agent, family: Family | None) -> dict[str, Any]:
    """What `render_prompt` needs besides the messages and the date, as the agent's runs used it.

    `model` is the name the runtime rendered with: `llama{family}` when the server reported the
    family (that is how the loop picks the format), else the agent's model name. `tool_format`
    is resolved (never null), so a reader needs no knowledge of the defaults.
    """
    model = f"llama{family}" if family is not None else agent.model
    return {
        "tools": [_spec_to_dict(tool.spec) for tool in agent.tools],
        "tool_format": agent.tool_format or default_tool_format(model),
        "tool_choice": agent.tool_choice,
        "model": model,
    }


def _utc_iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        raise DeveloperError("started must be an aware datetime (UTC): use datetime.now(UTC)")
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run of a batch, as one JSON line (see the module docstring for what it is for).

    `usage` is `RunUsage.to_dict()`, `messages` are `message_to_dict` forms, `timing` is
    `{"started": ISO-8601 UTC, "seconds": float}`, `check` is None when the task had none.
    """

    id: TaskId
    task: str
    status: RunStatus
    ok: bool
    answer: str
    error: str | None
    steps: int
    usage: Mapping[str, Any]
    timing: Mapping[str, Any]
    check: Verdict | None
    metadata: Mapping[str, Any]
    model: str
    today: str | None
    family: Family | None
    render: Mapping[str, Any]
    messages: tuple[Mapping[str, Any], ...] = field(default=())
    record_version: int = RECORD_VERSION

    @classmethod
    def from_result(
        cls,
        result: RunResult,
        *,
        agent: Agent,
        id: TaskId,  # the record's field is called id
        task: str,
        metadata: Mapping[str, Any] | None,
        check: Verdict | None,
        started: datetime.datetime,
        seconds: float,
    ) -> RunRecord:
        """The record of `result`, a run of `agent` on `task`."""
        return cls(
            id=id,
            task=task,
            status=result.status,
            ok=result.ok,
            answer=result.answer,
            error=result.error,
            steps=result.steps,
            usage=result.usage.to_dict(),
            timing={"started": _utc_iso(started), "seconds": round(seconds, 6)},
            check=check,
            metadata=dict(metadata or {}),
            model=result.model or agent.model,
            today=result.today.isoformat() if result.today is not None else None,
            family=result.family,
            render=render_settings(agent, result.family),
            messages=tuple(message_to_dict(m) for m in result.messages),
        )

    # --- the line -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "ok": self.ok,
            "answer": self.answer,
            "error": self.error,
            "steps": self.steps,
            "usage": self.usage,
            "timing": self.timing,
            "check": self.check.to_dict() if self.check is not None else None,
            "metadata": self.metadata,
            "model": self.model,
            "today": self.today,
            "family": self.family,
            "render": self.render,
            "messages": list(self.messages),
            "record_version": self.record_version,
        }

    def to_json(self) -> bytes:
        """One line, newline included: what a writer appends with a single `write()`.

        Non-string dict keys (metadata as a program gave it) become strings; a value JSON
        cannot hold is an error rather than a silently different line.
        """
        return orjson.dumps(
            self.to_dict(), option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        )

    @classmethod
    def from_json(cls, line: bytes | str) -> RunRecord:
        """Read one line back. Raises `DeveloperError` naming what is wrong (not JSON, not a
        record, an unknown `record_version`): the caller adds the file and line number."""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DeveloperError(f"not a JSON line ({exc})") from None
        if not isinstance(data, dict):
            raise DeveloperError(f"a run record is a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        version = data.get("record_version")
        if version != RECORD_VERSION:
            raise DeveloperError(
                f"record_version {version!r} is not {RECORD_VERSION}: this file was written by "
                "another llama-agent version; read it with that version or write it anew"
            )
        missing = sorted(_REQUIRED - data.keys())
        if missing:
            raise DeveloperError(f"not a run record: missing {', '.join(missing)}")
        if not is_task_id(data["id"]):
            raise DeveloperError(f"id must be a string or an integer, got {data['id']!r}")
        if data["status"] not in _STATUSES:
            raise DeveloperError(f"unknown status {data['status']!r}")
        check = data.get("check")
        return cls(
            id=data["id"],
            task=data["task"],
            status=data["status"],
            ok=bool(data["ok"]),
            answer=data.get("answer") or "",
            error=data.get("error"),
            steps=int(data.get("steps") or 0),
            usage=data.get("usage") or {},
            timing=data.get("timing") or {},
            check=Verdict.from_dict(check) if isinstance(check, Mapping) else None,
            metadata=data.get("metadata") or {},
            model=data.get("model") or "",
            today=data.get("today"),
            family=data.get("family"),
            render=data.get("render") or {},
            messages=tuple(data.get("messages") or ()),
        )

    # --- reading helpers ------------------------------------------------------------------

    @property
    def started(self) -> datetime.datetime | None:
        """When the run started (UTC), or None if the record does not say."""
        text = self.timing.get("started")
        return datetime.datetime.fromisoformat(text) if isinstance(text, str) else None

    @property
    def seconds(self) -> float:
        """How long the run took, wall clock."""
        return float(self.timing.get("seconds") or 0.0)

    @property
    def tokens(self) -> int:
        """Tokens the server evaluated over the run, prompt and generated (as `RunUsage.tokens`)."""
        total = self.usage.get("total") or {}
        return int(total.get("prompt_eval_count", 0)) + int(total.get("eval_count", 0))

    def to_messages(self) -> tuple[Message, ...]:
        """The conversation as `Message` objects (to render it, or continue it as `history=`)."""
        return tuple(Message.from_dict(m) for m in self.messages)

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """The tools the run offered, as specs."""
        return tuple(ToolSpec.from_dict(t) for t in self.render.get("tools") or ())


_REQUIRED = frozenset({"id", "task", "status", "ok"})


def is_task_id(value: object) -> bool:
    """A string or an integer; not a bool (JSON `true` is no id), not a float."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
