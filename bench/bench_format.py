"""Speed of the Llama 3 format layer (a benchmark, not a test): `python bench/bench_format.py`.

Prints microseconds per operation (best of several rounds):
- rendering a 40-message conversation with 10 tools (Llama 3.1 JSON and 3.2 python-list);
- parsing a ~2 KB completion whole, and streamed in ~8-character chunks;
- the same for ~200 KB, to show that streaming stays linear;
- count_tokens on the rendered prompt (exact if the tokenizer extra is installed).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from agent.llama3 import (
    Message,
    StreamParser,
    ToolCall,
    ToolSpec,
    count_tokens,
    parse_completion,
    render_prompt,
    tokenizer_is_exact,
)

DAY = dt.date(2024, 9, 21)


def tools() -> list[ToolSpec]:
    specs = [ToolSpec(name="brave_search", builtin="brave_search")]
    for i in range(9):
        specs.append(
            ToolSpec(
                name=f"tool_{i}",
                description=f"Tool number {i}: does something useful with its inputs.",
                parameters={
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "A city name"},
                        "days": {"type": "integer", "description": "How many days", "default": 3},
                        "units": {"type": "string", "enum": ["metric", "imperial"]},
                    },
                    "required": ["city"],
                },
            )
        )
    return specs


def conversation() -> list[Message]:
    messages = [Message(role="system", content="You are a helpful assistant.")]
    for i in range(13):
        messages.append(Message(role="user", content=f"Question {i}: what about city {i}? " * 3))
        raw = json.dumps({"name": f"tool_{i % 9}", "parameters": {"city": f"City {i}"}})
        messages.append(
            Message(
                role="assistant",
                raw=raw,
                tool_calls=(ToolCall(name=f"tool_{i % 9}", arguments={"city": f"City {i}"}),),
                stop_reason="end_of_message",
            )
        )
        messages.append(Message(role="tool", content=json.dumps({"temp": i, "text": "x" * 200})))
    messages = messages[:39]
    messages.append(Message(role="user", content="Thanks, and the summary?"))
    assert len(messages) == 40
    return messages


def completion(size: int) -> str:
    prose = (
        "Here is what I found about the weather in Paris [source](https://example.com). "
        "Temperatures will be mild {around 18°C}, with rain later in the week.\n\n"
    )
    call = '{"name": "tool_1", "parameters": {"city": "Paris", "days": 3, "units": "metric"}}'
    text = ""
    while len(text) < size - len(call):
        text += prose
    return text + call


def best(fn: Callable[[], Any], *, rounds: int = 7, number: int = 0) -> float:
    """Best per-call time in microseconds."""
    if not number:
        number, t = 1, 0.0
        while t < 0.05:
            number *= 2
            start = time.perf_counter()
            for _ in range(number):
                fn()
            t = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times) * 1e6


def streamed(text: str, names: list[str]) -> None:
    parser = StreamParser(tools=names)
    for i in range(0, len(text), 8):
        parser.feed(text[i : i + 8])
    parser.finish()


def main() -> None:
    specs, messages = tools(), conversation()
    names = [s.builtin or s.name for s in specs]
    rows: list[tuple[str, float]] = []
    rows.append(
        (
            "render 40 messages + 10 tools (llama3.1, json)",
            best(lambda: render_prompt(messages, specs, model="llama3.1", today=DAY)),
        )
    )
    rows.append(
        (
            "render 40 messages + 10 tools (llama3.2, python_list)",
            best(lambda: render_prompt(messages, specs, model="llama3.2", today=DAY)),
        )
    )
    for size in (2_000, 200_000):
        text = completion(size)
        label = f"{len(text) / 1000:.1f} KB"
        assert parse_completion(text, tools=names).tool_calls, "the benchmark text must hold a call"
        rows.append((f"parse {label} whole", best(lambda t=text: parse_completion(t, tools=names))))
        rows.append(
            (f"parse {label} streamed, 8-char chunks", best(lambda t=text: streamed(t, names)))
        )
    prompt = render_prompt(messages, specs, model="llama3.1", today=DAY)
    kind = "exact" if tokenizer_is_exact() else "estimate"
    rows.append(
        (
            f"count_tokens, {len(prompt) / 1000:.1f} KB prompt ({kind})",
            best(lambda: count_tokens(prompt)),
        )
    )
    width = max(len(label) for label, _ in rows)
    for label, micros in rows:
        print(f"{label:<{width}}  {micros:>12,.1f} µs")


if __name__ == "__main__":
    main()
