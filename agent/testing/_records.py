"""What the emulator records about every request it receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.testing._faults import Fault


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """One request and what the emulator answered.

    For `/api/generate` and `/api/chat`: `prompt` is what the model saw (the raw prompt as sent,
    or the template's rendering), `prompt_tokens` its token count with the BOS Ollama adds,
    `cached_tokens` how many of them the emulated prompt cache already held, `prompt_eval_count`
    what the response reported, `completion` the text sent back, `cancelled` whether the client
    went away before the end, `reloaded` whether the model was (re)loaded for it (first use, or
    a changed `num_ctx`).
    """

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    error: str | None = None
    fault: Fault | None = None
    model: str | None = None
    prompt: str | None = None
    raw: bool | None = None
    stream: bool | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: Any = None
    num_ctx: int | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    completion: str = ""
    done_reason: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    truncated: bool = False
    reloaded: bool = False
    cancelled: bool = False
    finished: bool = False
