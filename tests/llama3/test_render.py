"""render_prompt beyond the golden cases: inputs it accepts, refusals, and encoding rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from agent.errors import RenderError
from agent.llama3 import EOM, EOT, PYTHON_TAG, Message, ToolCall, ToolSpec, render_prompt
from agent.llama3._render import format_date

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City"},
            "days": {"type": ["integer", "null"], "description": "Days", "default": 0},
            "tags": {"items": {"type": "string"}},
        },
        "required": ["city"],
    },
)
DAY = dt.date(2024, 9, 21)


@dataclass
class FakeTool:
    spec: ToolSpec


def test_dicts_messages_and_tools_mix_freely() -> None:
    as_objects = render_prompt(
        [Message(role="user", content="Hi")],
        [WEATHER, ToolSpec(name="x", builtin="brave_search")],
        today=DAY,
    )
    as_dicts = render_prompt(
        [{"role": "user", "content": "Hi"}],
        [FakeTool(WEATHER), {"type": "builtin", "name": "brave_search"}],
        today=DAY,
    )
    assert as_objects == as_dicts
    assert "Tools: brave_search\n" in as_objects
    assert '"name": "x"' not in as_objects


def test_openai_style_tool_dict() -> None:
    openai = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": dict(WEATHER.parameters),
        },
    }
    assert render_prompt([], [openai], today=DAY) == render_prompt([], [WEATHER], today=DAY)


def test_builtin_served_by_a_differently_named_tool_is_listed_natively() -> None:
    spec = ToolSpec(name="my_search", description="mine", builtin="brave_search")
    prompt = render_prompt([{"role": "user", "content": "q"}], [spec], today=DAY)
    assert "Environment: ipython\nTools: brave_search\n" in prompt
    assert "my_search" not in prompt
    required = render_prompt([], [spec], today=DAY, tool_choice="my_search")
    assert "You MUST use the tool `brave_search`" in required


def test_today_defaults_to_the_real_date() -> None:
    prompt = render_prompt([{"role": "user", "content": "q"}])
    assert f"Today Date: {format_date(dt.date.today())}" in prompt


def test_date_is_english_and_zero_padded() -> None:
    assert format_date(dt.date(2025, 1, 5)) == "05 January 2025"
    assert format_date(dt.date(2024, 12, 31)) == "31 December 2024"


def test_ipython_role_alias() -> None:
    a = render_prompt([{"role": "ipython", "content": "r"}], add_system_prompt=False)
    b = render_prompt([{"role": "tool", "content": "r"}], add_system_prompt=False)
    assert (
        a
        == b
        == (
            "<|begin_of_text|><|start_header_id|>ipython<|end_header_id|>\n\nr<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
        ({"messages": [{"content": "x"}]}, "role None"),
        ({"messages": ["hello"]}, "a message must be"),
        ({"tools": [42]}, "a tool must be"),
        ({"tools": [{"description": "no name"}]}, "needs a 'name'"),
        ({"tool_choice": "nope"}, "tool_choice 'nope'"),
        ({"tool_format": "xml"}, "unknown tool_format"),
        ({"system_message_behavior": "merge"}, "system_message_behavior"),
        (
            {"messages": [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}]},
            "two system messages",
        ),
        ({"model": "llama3.2", "tool_format": "json"}, "python_list"),
        (
            {
                "model": "llama3.2",
                "system_message_behavior": "replace",
                "messages": [{"role": "system", "content": "no placeholder"}],
            },
            "function_description",
        ),
        ({"tools": [ToolSpec(name="b", builtin="dall_e")]}, "unknown built-in"),  # type: ignore[arg-type]
        ({"tools": [ToolSpec(name="t", parameters={"properties": ["a"]})]}, "must be an object"),
    ],
)
def test_refusals_are_clear(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"messages": [{"role": "user", "content": "q"}], "tools": [WEATHER]}
    args.update(kwargs)
    messages, tools = args.pop("messages"), args.pop("tools")
    with pytest.raises(RenderError, match=match):
        render_prompt(messages, tools, **args)


def test_format_refusal_only_with_custom_tools() -> None:
    builtin = [{"type": "builtin", "name": "brave_search"}]
    assert "Tools: brave_search" in render_prompt([], builtin, tool_format="python_list")
    assert "Tools: brave_search" in render_prompt([], builtin, model="llama3.2", tool_format="json")


def test_tool_choice_none_leaves_the_tools_out() -> None:
    messages = [{"role": "user", "content": "q"}]
    assert render_prompt(messages, [WEATHER], today=DAY, tool_choice="none") == render_prompt(
        messages, [], today=DAY
    )


def test_python_list_parameters_follow_meta() -> None:
    prompt = render_prompt([], [WEATHER], model="llama3.2")
    assert '"type": "integer | null"' in prompt  # type lists are joined
    assert '"type": "array"' in prompt  # inferred from "items"
    assert '"default"' not in prompt  # falsy defaults vanish, as in Meta's template
    assert '"required": ["city"]' in prompt


def test_replace_puts_the_function_list_at_the_placeholder_without_running_jinja() -> None:
    system = {"role": "system", "content": "{{ 1 + 1 }} Tools:\n{{function_description}}\nEnd.\n"}
    prompt = render_prompt([system], [WEATHER], model="llama3.2", system_message_behavior="replace")
    assert "{{ 1 + 1 }} Tools:\nHere is a list of functions" in prompt
    assert "tool outputs.\nEnd.<|eot_id|>" in prompt


def test_neutral_assistant_calls_are_encoded_as_meta_does() -> None:
    calls = (
        ToolCall(name="code_interpreter", arguments={"code": "print(1)"}),
        ToolCall(name="get_weather", arguments={"city": "Zürich"}),
    )
    msg = Message(role="assistant", content="", tool_calls=calls, stop_reason="end_of_message")
    prompt = render_prompt([msg], [WEATHER], add_system_prompt=False)
    assert (
        f"{PYTHON_TAG}print(1)"
        '{"type": "function", "name": "get_weather", "parameters": {"city": "Z\\u00fcrich"}}'
        f"{EOM}"
    ) in prompt
    tagged = render_prompt([msg], [WEATHER], add_system_prompt=False, tool_format="function_tag")
    assert 'print(1)<function=get_weather>{"city": "Z\\u00fcrich"}</function>' in tagged
    listed = render_prompt([msg], [WEATHER], add_system_prompt=False, tool_format="python_list")
    assert 'print(1)[get_weather(city="Zürich")]' in listed


def test_python_list_values_follow_meta() -> None:
    call = ToolCall(name="f", arguments={"d": {"k": [1, "a"]}, "t": (1, 2), "b": False})
    msg = Message(role="assistant", tool_calls=(call,), stop_reason="end_of_turn")
    prompt = render_prompt([msg], tool_format="python_list", add_system_prompt=False)
    assert f'[f(d={{k=[1, "a"]}}, t=[1, 2], b=False)]{EOT}' in prompt


def test_unencodable_arguments_are_refused() -> None:
    msg = Message(role="assistant", tool_calls=(ToolCall(name="f", arguments={"x": object()}),))
    with pytest.raises(RenderError, match="not JSON"):
        render_prompt([msg], add_system_prompt=False)
    with pytest.raises(RenderError, match="python-list"):
        render_prompt([msg], add_system_prompt=False, tool_format="python_list")


def test_a_custom_tool_named_like_a_builtin_is_encoded_as_custom() -> None:
    custom = ToolSpec(name="brave_search", description="mine")
    call = ToolCall(name="brave_search", arguments={"query": "x"})
    msg = Message(role="assistant", tool_calls=(call,))
    assert '"name": "brave_search"' in render_prompt([msg], [custom], add_system_prompt=False)
    assert 'brave_search.call(query="x")' in render_prompt([msg], add_system_prompt=False)


def test_later_system_messages_stay_in_place() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "note <|eot_id|>"},
    ]
    prompt = render_prompt(messages, today=DAY)
    assert "<|start_header_id|>system<|end_header_id|>\n\nnote <|eot_id|>" in prompt
