"""The values the format layer works on, and which format a model name calls for.

Messages, tool calls, tool specs and parse results are frozen, keyword-only dataclasses. The
renderer also accepts the neutral dict form of `tests/llama3/data/render_cases.json` (see
`Message.from_dict` / `ToolSpec.from_dict`). `model_family` maps a model name to the prompt
format of its Llama 3.x release, and `default_tool_format` to Meta's custom-tool format for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from agent._frozen import stored_at_once

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["end_of_turn", "end_of_message"]
Family = Literal["3.1", "3.2", "3.3"]
BuiltinName = Literal["brave_search", "wolfram_alpha", "code_interpreter", "photogen"]
ToolFormat = Literal["json", "function_tag", "python_list"]

BUILTIN_NAMES: frozenset[str] = frozenset(
    {"brave_search", "wolfram_alpha", "code_interpreter", "photogen"}
)


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """One call the model made. Built-in calls carry the built-in's name (`brave_search`)."""

    name: str
    arguments: Mapping[str, Any]
    id: str = ""


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class Message:
    """One message of a conversation.

    - `raw`: for assistant turns received from the model, the completion text exactly as generated;
      the renderer re-emits it verbatim (prefix stability, DESIGN decision 4).
    - `trusted`: user or system text the program vouches for; untrusted text (the default for
      user and tool messages) is neutralized so it cannot forge special tokens.
    - `tool_call_id` / `name`: for tool results; Meta's format ignores them, the runtime keeps them.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_of_turn"
    raw: str | None = None
    tool_call_id: str | None = None
    name: str | None = None
    trusted: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from the neutral dict form (FORMAT.md §1.1)."""
        calls = tuple(
            ToolCall(name=c["name"], arguments=c.get("arguments", {}), id=c.get("id", "") or "")
            for c in data.get("tool_calls") or ()
        )
        return cls(
            role=data["role"],
            content=data.get("content", "") or "",
            tool_calls=calls,
            stop_reason=data.get("stop_reason", "end_of_turn") or "end_of_turn",
            raw=data.get("raw"),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            trusted=bool(data.get("trusted", False)),
        )


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """What the model is told about one tool.

    `builtin` names the Llama built-in this tool serves; such tools are listed the native way
    (`Tools: brave_search, ...`) instead of as JSON definitions. Treat `parameters` as frozen
    too: the renderer caches each spec's tool definition, so a change made in place to the
    dict after the spec was rendered is not seen (make a new spec instead).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    builtin: BuiltinName | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolSpec:
        """Build a spec from the neutral dict form (`{"type": "builtin", ...}` or a function)."""
        if data.get("type") == "builtin":
            return cls(name=data["name"], builtin=data["name"])
        return cls(
            name=data["name"],
            description=data.get("description", "") or "",
            parameters=data.get("parameters") or {"type": "object", "properties": {}},
        )


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class MalformedCall:
    """Text that was meant as a tool call but cannot be used: cut off, garbled, or invalid JSON.

    `reason` is a short sentence meant for the model (it goes back as an ipython result).
    """

    text: str
    reason: str
    name: str | None = None


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class ParsedCompletion:
    """What the model wrote: prose, the calls it made, and calls it botched."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    malformed: tuple[MalformedCall, ...] = ()
    stop_reason: StopReason = "end_of_turn"

    @property
    def wants_tools(self) -> bool:
        """True when the loop must run tools (or report broken calls) before the model goes on."""
        return bool(self.tool_calls or self.malformed)


# --- model families ------------------------------------------------------------------------

_VERSION = re.compile(r"llama[\s_-]*3(?:[._-]([0-9]))?(?![0-9])", re.IGNORECASE)
_VISION = re.compile(r"vision|\b(?:11|90)b\b", re.IGNORECASE)


@lru_cache(maxsize=64)
def model_family(model: str) -> Family:
    """The prompt-format family of a model name.

    Understands Ollama names (`llama3.1:70b`, `llama3.2:3b`, `llama3.3`), Hugging Face names
    (`hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M`) and Meta's (`Llama3.1-8B-Instruct`).
    Llama 3.2 vision models (11B, 90B) use the 3.1 format, as in Meta's llama-stack, so they give
    `"3.1"`; so does anything unknown (and Llama 3.0).
    """
    match = _VERSION.search(model)
    minor = match.group(1) if match else None
    if minor == "2" and not _VISION.search(model):
        return "3.2"
    if minor == "3":
        return "3.3"
    return "3.1"


def default_tool_format(model: str) -> ToolFormat:
    """Meta's default custom-tool format: JSON for 3.1, the python list for 3.2 and 3.3."""
    return "json" if model_family(model) == "3.1" else "python_list"
