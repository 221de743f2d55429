"""Shaping a generation into response payloads: continuations, tool calls, `context` ids."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from agent.testing._chat import call_id, parse_tool_calls
from agent.testing._generation import Generation, split_tokens

if TYPE_CHECKING:
    from agent.testing._emulator import OllamaEmulator

Endpoint = Literal["generate", "chat"]

_SPECIAL_IDS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}


def continue_output(output: str | Sequence[str], partial: str) -> str | Sequence[str]:
    """A deterministic model continues its own text: drop what the prompt already holds."""
    if not partial:
        return output
    if isinstance(output, str):
        return output.removeprefix(partial)
    if not "".join(output).startswith(partial):
        return output
    pieces, skip = [], len(partial)
    for piece in output:
        if skip >= len(piece):
            skip -= len(piece)
            continue
        pieces.append(piece[skip:])
        skip = 0
    return pieces


def shape(
    emu: OllamaEmulator,
    endpoint: Endpoint,
    generation: Generation,
    tools: Sequence[Mapping[str, Any]],
    *,
    stream: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The non-final payloads, the tool calls found, and the text the final chunk carries."""
    if endpoint == "generate":
        return [{"response": c} for c in generation.chunks], [], ""
    names = [str((t.get("function") or {}).get("name", "")) for t in tools]
    text = generation.text
    calls: list[tuple[str, dict[str, Any]]] = []
    held = False
    if tools:
        if emu.version_at_least(0, 8):
            calls = parse_tool_calls(text, names)
            held = text.lstrip().startswith("{")
        elif emu.version_at_least(0, 4, 6):
            calls = parse_tool_calls(text, names, gate=False)
            held = True
        elif not stream:
            calls = parse_tool_calls(text, names, gate=False)
    if calls:
        tool_calls = [_tool_call(emu, i, n, a) for i, (n, a) in enumerate(calls)]
        message = {"role": "assistant", "content": "", "tool_calls": tool_calls}
        return [{"message": message}], tool_calls, ""
    if held:
        return [], [], text
    return [{"message": {"role": "assistant", "content": c}} for c in generation.chunks], [], ""


def _tool_call(
    emu: OllamaEmulator, index: int, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if emu.version_at_least(0, 12, 6) or (index and emu.version_at_least(0, 4, 7)):
        function["index"] = index
    function["name"] = name
    function["arguments"] = arguments
    call: dict[str, Any] = {}
    if emu.version_at_least(0, 12, 10):
        call["id"] = call_id()
    call["function"] = function
    return call


def pseudo_ids(text: str) -> list[int]:
    # Placeholder token ids for the deprecated `context` field: stable, one per token-like piece.
    pieces = ["<|begin_of_text|>", *split_tokens(text)]
    return [_SPECIAL_IDS.get(p, zlib.crc32(p.encode()) % 128000) for p in pieces]
