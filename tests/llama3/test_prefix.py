"""Prefix stability (DESIGN decision 4): the next prompt begins with the previous prompt plus
the completion exactly as streamed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.llama3 import EOM, EOT, Message, parse_completion, render_prompt

DAY = dt.date(2024, 9, 21)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TOOLS: list[dict[str, Any]] = [{"type": "builtin", "name": "brave_search"}, WEATHER]
NAMES = ["brave_search", "get_weather"]


def _step(messages: list[Message], completion: str, result: str, model: str) -> list[Message]:
    parsed = parse_completion(completion, tools=NAMES)
    assistant = Message(
        role="assistant",
        content=parsed.content,
        tool_calls=parsed.tool_calls,
        stop_reason=parsed.stop_reason,
        raw=completion,
    )
    return [*messages, assistant, Message(role="tool", content=result)]


@pytest.mark.parametrize(
    ("model", "completion"),
    [
        ("llama3.1", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        ("llama3.1", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        ("llama3.1", 'brave_search.call(query="paris weather")'),
        ("llama3.1", 'Let me check.\n\n<function=get_weather>{"city": "Paris"}</function>'),
        ("llama3.2:3b", '[get_weather(city="Paris")]'),
        ("llama3.3", '[get_weather(city="Paris"), get_weather(city="Lyon")]'),
    ],
)
def test_next_prompt_starts_with_previous_prompt_plus_completion(
    model: str, completion: str
) -> None:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather?"),
    ]
    first = render_prompt(messages, TOOLS, model=model, today=DAY)
    messages = _step(messages, completion, '{"temp": 18}', model)
    second = render_prompt(messages, TOOLS, model=model, today=DAY)
    assert second.startswith(first + completion)
    assert second[len(first + completion) :].startswith((EOM, EOT))
    messages = _step(messages, "It is 18 degrees.", "unused", model)[:-1]
    messages.append(Message(role="user", content="And tomorrow?"))
    third = render_prompt(messages, TOOLS, model=model, today=DAY)
    assert third.startswith(second + "It is 18 degrees.")


def test_end_token_follows_the_stop_reason() -> None:
    raw = 'brave_search.call(query="x")'
    parsed = parse_completion(raw)
    assert parsed.stop_reason == "end_of_message"
    for stop, token in [("end_of_message", EOM), ("end_of_turn", EOT)]:
        msg = Message(role="assistant", raw=raw, stop_reason=stop)  # type: ignore[arg-type]
        prompt = render_prompt([msg], add_system_prompt=False)
        assert f"{raw}{token}<|start_header_id|>assistant" in prompt


@pytest.mark.parametrize("ending", [EOT, EOM])
def test_raw_with_its_own_end_token_is_kept_as_is(ending: str) -> None:
    raw = "Hello there." + ending
    msg = Message(role="assistant", raw=raw, stop_reason="end_of_turn", content="ignored")
    prompt = render_prompt([Message(role="user", content="hi"), msg], add_system_prompt=False)
    assert f"<|end_header_id|>\n\n{raw}<|start_header_id|>assistant" in prompt
    assert "ignored" not in prompt
