"""Section 3: how much of each prompt the server's cache can reuse.

The emulator keeps what a llama.cpp slot keeps (the last prompt and the tokens generated after
it) and reports `prompt_eval_count` as the tokens past the longest common prefix, so the
records say what a real server would have to prefill.

Two conversations, each played twice against a fresh emulator:

* raw: `Agent.run` (native prompts, tool definitions once at the start, completions re-sent
  verbatim);
* chat: the same conversation as a minimal loop on `ollama.AsyncClient.chat`, so that the
  server renders it with Ollama's llama3.1 template (tool definitions inside the last message
  when that is a user message, tool calls re-serialized).

The ten-step run is one task and nine calls; the multi-turn one is five user turns of one call
and one answer each (ten requests too).

Per request: prompt tokens, tokens reused from the cache, tokens prefilled; for the raw path
also the tokens of what is new since the previous request (its end token, the tool results, the
next header): the goal is to prefill exactly those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import ollama

from agent import Agent, RunResult
from agent.llama3 import count_tokens
from agent.testing import OllamaEmulator, RecordedRequest, ScriptRequest, tool_call_text
from bench._common import Goal, SectionResult, Table
from bench._step_cost import _CALLS, TODAY, TOOLS

SYSTEM = "You are a careful assistant. Be brief."
TASK = "Plan my trip to Lyon, one lookup at a time."
TURNS = [
    "What is the weather in Paris?",
    "Any good bakeries in Lyon?",
    "And the price of AAPL?",
    "Convert 120.5 EUR to USD.",
    "Where is my order A-10293?",
]
_BY_NAME = {t.name: t for t in TOOLS}


def _chain_script(calls: int) -> Any:
    def script(request: ScriptRequest) -> str:
        step = len(request.tool_results)
        if step < calls:
            name, arguments = _CALLS[step % len(_CALLS)]
            return tool_call_text(name, arguments, python_tag=request.raw)
        return "The trip is planned.<|eot_id|>"

    return script


def _turns_script(request: ScriptRequest) -> str:
    turn = sum(1 for t in request.turns if t.role == "user")
    if not request.tool_results:
        name, arguments = _CALLS[(turn - 1) % len(_CALLS)]
        return tool_call_text(name, arguments, python_tag=request.raw)
    return f"Here is answer {turn}.<|eot_id|>"


async def _raw(script: Any, tasks: Sequence[str]) -> list[RecordedRequest]:
    async with OllamaEmulator(script) as emu:
        async with Agent(tools=TOOLS, system=SYSTEM, host=emu.url, today=TODAY) as agent:
            history: RunResult | None = None
            for task in tasks:
                history = await agent.run(task, history=history)
                if not history.ok:
                    raise AssertionError(f"the raw run ended with {history.status}")
        return emu.completions


async def _chat(script: Any, tasks: Sequence[str]) -> list[RecordedRequest]:
    tools = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in TOOLS
    ]
    async with OllamaEmulator(script) as emu:
        client = ollama.AsyncClient(emu.url)
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        try:
            for task in tasks:
                messages.append({"role": "user", "content": task})
                while True:
                    response = await client.chat(
                        "llama3.1", messages=messages, tools=tools, options={"num_ctx": 8192}
                    )
                    calls = response.message.tool_calls or []
                    messages.append(
                        {
                            "role": "assistant",
                            "content": response.message.content or "",
                            "tool_calls": [
                                {
                                    "function": {
                                        "name": c.function.name,
                                        "arguments": dict(c.function.arguments),
                                    }
                                }
                                for c in calls
                            ],
                        }
                    )
                    if not calls:
                        break
                    for call in calls:
                        chosen = _BY_NAME[call.function.name]
                        done = await chosen.execute(chosen.validate(call.function.arguments))
                        messages.append({"role": "tool", "content": done.text})
        finally:
            await client._client.aclose()
        return emu.completions


def _steps(records: Sequence[RecordedRequest], *, raw: bool) -> list[dict[str, Any]]:
    steps = []
    previous = ""
    for record in records:
        prompt = record.prompt or ""
        entry: dict[str, Any] = {
            "prompt_tokens": record.prompt_tokens,
            "reused": record.cached_tokens,
            "prefilled": record.prompt_eval_count,
            "num_ctx": record.num_ctx,
            "reloaded": record.reloaded,  # a new num_ctx made the server reload: cache lost
        }
        if raw and previous:
            # What a perfect cache leaves to prefill: the text past the previous prompt and
            # the tokens generated after it.
            entry["new"] = (
                count_tokens(prompt.removeprefix(previous)) if prompt.startswith(previous) else None
            )
        steps.append(entry)
        previous = prompt + record.completion
    return steps


def _share(step: Mapping[str, Any]) -> str:
    return f"{100 * step['reused'] / step['prompt_tokens']:.0f} %"


def _prefilled(step: Mapping[str, Any], index: int) -> str:
    reload = step["reloaded"] and index > 1
    return (
        f"{step['prefilled']} (reload, num_ctx {step['num_ctx']})"
        if reload
        else str(step["prefilled"])
    )


def _table(title: str, raw: list[dict[str, Any]], chat: list[dict[str, Any]]) -> Table:
    rows = []
    for index, (r, c) in enumerate(zip(raw, chat, strict=True), start=1):
        new = r.get("new")
        rows.append(
            [
                str(index),
                str(r["prompt_tokens"]),
                _share(r),
                _prefilled(r, index),
                "-" if new is None else str(new),
                str(c["prompt_tokens"]),
                _share(c),
                _prefilled(c, index),
            ]
        )
    rows.append(
        [
            "total",
            str(sum(r["prompt_tokens"] for r in raw)),
            "",
            str(sum(r["prefilled"] for r in raw)),
            str(sum(r.get("new") or 0 for r in raw)),
            str(sum(c["prompt_tokens"] for c in chat)),
            "",
            str(sum(c["prefilled"] for c in chat)),
        ]
    )
    return Table(
        title=title,
        headers=[
            "request",
            "raw: prompt",
            "reused",
            "prefilled",
            "new text",
            "chat: prompt",
            "reused",
            "prefilled",
        ],
        rows=rows,
    )


async def _measure() -> dict[str, list[dict[str, Any]]]:
    chain = _chain_script(9)
    turns = _turns_script
    return {
        "ten_step_raw": _steps(await _raw(chain, [TASK]), raw=True),
        "ten_step_chat": _steps(await _chat(chain, [TASK]), raw=False),
        "turns_raw": _steps(await _raw(turns, TURNS), raw=True),
        "turns_chat": _steps(await _chat(turns, TURNS), raw=False),
    }


def run(*, quick: bool) -> SectionResult:
    data = anyio.run(_measure)
    result = SectionResult(key="cache", title="3. Prompt-cache reuse")
    result.tables = [
        _table(
            "Ten-step run (one task, nine calls), tokens per request",
            data["ten_step_raw"],
            data["ten_step_chat"],
        ),
        _table(
            "Five user turns, one call and one answer each, tokens per request",
            data["turns_raw"],
            data["turns_chat"],
        ),
    ]
    result.data = data
    over = [
        (key, index)
        for key in ("ten_step_raw", "turns_raw")
        for index, s in enumerate(data[key][1:], start=2)
        if s.get("new") is None or s["prefilled"] > s["new"]
    ]
    raw_total = sum(s["prefilled"] for s in data["ten_step_raw"][1:])
    new_total = sum(s.get("new") or 0 for s in data["ten_step_raw"][1:])
    chat_total = sum(s["prefilled"] for s in data["ten_step_chat"][1:])
    where = ", ".join(f"{key} request {index}" for key, index in over)
    result.goals.append(
        Goal(
            name="raw prompts prefill only the new messages (requests 2-10)",
            target="prefilled <= new text, every request",
            measured=f"ten-step run: {raw_total} tokens prefilled after the first request, "
            f"{new_total} new (chat template: {chat_total})"
            + (f"; more than new at {where}" if over else ""),
            met=not over,
        )
    )
    for key in ("ten_step_raw", "turns_raw"):
        steps = data[key]
        for index in range(1, len(steps)):
            before, now = steps[index - 1], steps[index]
            if now["reloaded"]:
                result.notes.append(
                    f"{key}, request {index + 1}: the backend raised num_ctx from "
                    f"{before['num_ctx']} to {now['num_ctx']} (the prompt, "
                    f"{now['prompt_tokens']} tokens, plus the room kept for the answer no longer "
                    "fit), so the server reloaded the model and its cache was lost: the whole "
                    "prompt was prefilled again (`agent/backends/_context.py:size_context`)."
                )
    result.notes.append(
        "Prefilled counts include the one prompt token llama.cpp always re-evaluates. "
        "Ollama's llama3.1 template renders tool definitions in the last message only when it "
        "is a user message: within one task they vanish from the prompt after the first "
        "request (the model no longer sees them, and the user turn is prefilled again); "
        "across user turns they move to each new user message and are prefilled again every "
        "turn. Its tool calls are re-serialized (compact, sorted JSON), so the tokens the "
        "model generated never match the next prompt."
    )
    result.notes.append(
        "The raw prompt is larger than the chat template's because Meta's format for "
        "Llama 3.1 (FORMAT.md) states each tool's definition in full, with its instructions."
    )
    return result
