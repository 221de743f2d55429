"""A validated call, ready to run, and what running it gave."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.toolkit._tool import Tool


@dataclass(frozen=True, kw_only=True)
class BoundCall:
    """Arguments that passed a tool's schema, made by `Tool.validate`.

    - `arguments`: the JSON-level dict after coercions (what to log, or show in events).
    - `coercions`: each repair made, human-readable: `argument 'b': "10" -> 10`.
    - `values`: the Python values the function receives (pydantic models, enums, ...); `None`
      when the call was built by hand, and `Tool.execute` then converts `arguments` itself.
    """

    tool: Tool[..., Any]
    arguments: Mapping[str, Any]
    coercions: tuple[str, ...] = ()
    values: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    """What a tool call gave.

    - `text`: what the model sees: a string result as it is; anything else as compact JSON; an
      error's message. Capped at the tool's `max_output` with a visible marker.
    - `is_error`: the tool raised, timed out, or could not be called.
    - `exception` / `traceback`: for the program (events, logs), never shown to the model.
    - `duration`: seconds, conversion and execution included.
    - `truncated`: `text` was cut to `max_output`.
    """

    text: str
    is_error: bool = False
    exception: BaseException | None = None
    traceback: str | None = None
    duration: float = 0.0
    truncated: bool = False
