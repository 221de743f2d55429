"""`/api/chat` on the emulator: the published Llama 3.x template and Ollama's tool-call parser.

Rendering follows the llama3.1 Go template (PROTOCOL.md §1.7) and its llama3.2 variant, with
Ollama's `collate` step (§2.1): system messages joined into `.System`, consecutive same-role
messages merged, roles the template does not know dropped, tools only in the last user message,
`tool` rendered as `ipython`. Tool calls are parsed from the output with the v0.8+ rules (§2.4).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

_TOOLS_SYSTEM = (
    "When you receive a tool call response, use the output to format an answer to the orginal "
    "user question.\n\nYou are a helpful assistant with tool calling capabilities."
)
_TOOLS_USER = (
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format "
    '{"name": function name, "parameters": dictionary of argument name and its value}. '
    "Do not use variables.\n\n"
)
_HEADER = "<|start_header_id|>{}<|end_header_id|>"


def _collate(
    messages: Sequence[Mapping[str, Any]], model_system: str
) -> tuple[str, list[dict[str, Any]]]:
    systems = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    if model_system and (not messages or messages[0].get("role") != "system"):
        systems.insert(0, model_system)
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("user", "assistant", "tool"):
            continue
        if merged and merged[-1]["role"] == role and role != "tool":
            previous = merged[-1]
            previous["content"] = f"{previous['content']}\n\n{message.get('content') or ''}"
            previous["tool_calls"] = [*previous["tool_calls"], *(message.get("tool_calls") or [])]
            continue
        merged.append(
            {
                "role": role,
                "content": str(message.get("content") or ""),
                "tool_calls": list(message.get("tool_calls") or []),
            }
        )
    return "\n\n".join(systems), merged


def render_chat(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    *,
    family: str | None,
    model_system: str = "",
) -> str:
    """The prompt Ollama's llama3.x template makes of `messages` (without the BOS)."""
    system, turns = _collate(messages, model_system)
    out: list[str] = []
    if family == "3.2":
        out.append(_HEADER.format("system") + "\n\nCutting Knowledge Date: December 2023\n\n")
        if system:
            out.append(system)
        if tools:
            out.append(_TOOLS_SYSTEM)
        out.append("<|eot_id|>")
    elif system or tools:
        out.append(_HEADER.format("system"))
        if system:
            out.append(f"\n\n{system}")
        if tools:
            out.append(f"\n\nCutting Knowledge Date: December 2023\n\n{_TOOLS_SYSTEM}")
        out.append("<|eot_id|>")
    for index, turn in enumerate(turns):
        last = index == len(turns) - 1
        content = turn["content"]
        if turn["role"] == "user":
            out.append(_HEADER.format("user"))
            if tools and last:
                listed = "".join(_go_json(tool) + "\n" for tool in tools)
                question = "" if family == "3.2" else "Question: "
                out.append(f"\n\n{_TOOLS_USER}{listed}\n{question}{content}<|eot_id|>")
            else:
                out.append(f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
        elif turn["role"] == "assistant":
            out.append(_HEADER.format("assistant"))
            if turn["tool_calls"]:
                out.append("\n")
                for call in turn["tool_calls"]:
                    function = call.get("function") or {}
                    arguments = json.dumps(
                        function.get("arguments") or {}, separators=(",", ":"), sort_keys=True
                    )
                    out.append(
                        f'\n{{"name": "{function.get("name", "")}", "parameters": {arguments}}}'
                    )
            else:
                out.append(f"\n\n{content}")
            if not last:
                out.append("<|eot_id|>")
        else:
            out.append(_HEADER.format("ipython") + f"\n\n{content}<|eot_id|>")
            if last:
                out.append(_HEADER.format("assistant") + "\n\n")
    return "".join(out)


def _go_json(value: Any) -> str:
    # Go's json.Marshal: compact, and <, > and & escaped.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def call_id() -> str:
    """`call_` and 8 characters from [a-z0-9], like Ollama ≥ 0.12.10."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def parse_tool_calls(
    text: str, tool_names: Sequence[str], *, gate: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    """Ollama's tool parser (v0.8+): the calls it finds in `text`, [] when it finds none.

    With `gate`, parsing happens only when the first non-blank character is `{` (the llama3.1
    template's tag). The name is the first declared tool name found anywhere in the buffer (the
    longest on a tie); arguments come from `arguments` or `parameters` (object or JSON string).
    Whatever follows the last call is dropped, as on the real server (ollama/ollama#17323).
    """
    buffer = text.lstrip()
    if gate and not buffer.startswith("{"):
        return []
    decoder = json.JSONDecoder()
    calls: list[tuple[str, dict[str, Any]]] = []
    while buffer:
        name = _find_tool(buffer, tool_names)
        start = buffer.find("{")
        if name is None or start < 0:
            break
        parsed = _first_object(decoder, buffer, start)
        if parsed is None:
            break
        obj, end = parsed
        arguments = _arguments(obj, name)
        if arguments is None:
            break
        calls.append((name, arguments))
        buffer = buffer[end:].lstrip(" \t\r\n;,")
    return calls


def _find_tool(buffer: str, names: Sequence[str]) -> str | None:
    best: tuple[int, int, str] | None = None
    for name in names:
        at = buffer.find(name) if name else -1
        if at >= 0 and (best is None or (at, -len(name)) < (best[0], best[1])):
            best = (at, -len(name), name)
    return best[2] if best else None


def _first_object(
    decoder: json.JSONDecoder, buffer: str, start: int
) -> tuple[dict[str, Any], int] | None:
    position = start
    while position >= 0:
        try:
            obj, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            position = buffer.find("{", position + 1)
            continue
        if isinstance(obj, dict):
            return obj, end
        position = buffer.find("{", end)
    return None


def _arguments(obj: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = obj.get("arguments", obj.get("parameters")) if "name" in obj else obj.get(name)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None
