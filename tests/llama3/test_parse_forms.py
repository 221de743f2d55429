"""The forms Llama 3.x writes calls in, the rules against inventing calls, and botched calls
(cases in `forms.py`)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.llama3 import StreamParser, allowed_names, parse_completion
from agent.llama3._types import ToolSpec
from tests.llama3.forms import CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_form(case: dict[str, Any]) -> None:
    got = parse_completion(case["raw"], tools=case["tools"])
    assert [(c.name, dict(c.arguments)) for c in got.tool_calls] == case["calls"]
    assert len(got.malformed) == case["malformed"], got.malformed
    if case["content"] is not None:
        assert got.content.strip() == case["content"].strip()
    if case["stop"] is not None:
        assert got.stop_reason == case["stop"]
    if not case["calls"] and not case["malformed"]:
        assert not got.wants_tools


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
@pytest.mark.parametrize("size", [1, 3, 8])
def test_form_streamed(case: dict[str, Any], size: int) -> None:
    raw = case["raw"]
    parser = StreamParser(tools=case["tools"])
    shown = "".join(parser.feed(raw[i : i + size]) for i in range(0, len(raw), size))
    whole = parse_completion(raw, tools=case["tools"])
    assert parser.finish() == whole
    assert whole.content.startswith(shown)


def test_malformed_reasons_speak_to_the_model() -> None:
    got = parse_completion('<function=nope>{"a": 1}</function>', tools=["get_weather"])
    (bad,) = got.malformed
    assert bad.name == "nope"
    assert "'nope' is not one of the tools" in bad.reason
    assert "get_weather" in bad.reason
    got = parse_completion('{"name": "get_weather", "parameters": {"city": "Pa', tools=None)
    assert got.malformed[0].reason == "the JSON tool call is cut off"
    assert got.malformed[0].name == "get_weather"


def test_plain_answer_streams_promptly() -> None:
    parser = StreamParser(tools=["get_weather"])
    assert parser.feed("The capital") == "The capital"
    assert parser.feed(" of France is ") == " of France is"  # the last space waits
    assert parser.feed("Paris. get_wea") == " Paris."  # could become get_weather.call(
    assert parser.feed("ther is a tool.") == " get_weather is a tool."
    assert parser.finish().content == "The capital of France is Paris. get_weather is a tool."


def test_stream_holds_back_a_call_and_shows_prose_around_it() -> None:
    parser = StreamParser(tools=["get_weather"])
    shown = parser.feed("Let me check.\n")
    shown += parser.feed('{"name": "get_weather", ')
    assert shown == "Let me check."
    shown += parser.feed('"parameters": {"city": "Paris"}}\nOne moment')
    assert "get_weather" not in shown
    result = parser.finish()
    assert [c.name for c in result.tool_calls] == ["get_weather"]
    assert result.content.startswith(shown)
    assert result.content.endswith("One moment")


def test_stream_shows_nothing_after_python_tag() -> None:
    parser = StreamParser()
    assert parser.feed("Computing.<|python_tag|>print(") == "Computing."
    assert parser.feed("1)") == ""
    assert parser.finish().tool_calls[0].arguments == {"code": "print(1)"}


def test_allowed_names_from_specs_and_tools() -> None:
    class Tool:
        spec = ToolSpec(name="my_search", builtin="brave_search")

    names = allowed_names(["get_weather", ToolSpec(name="get_time"), Tool(), {"name": "x"}])
    assert names == frozenset({"get_weather", "get_time", "brave_search", "x"})
    assert allowed_names(None) is None
    got = parse_completion('brave_search.call(query="q")', tools=[Tool()])
    assert got.tool_calls[0].name == "brave_search"


def test_tool_calls_have_no_ids_and_plain_dict_arguments() -> None:
    got = parse_completion('[get_weather(city="Paris")]')
    assert got.tool_calls[0].id == ""
    assert type(got.tool_calls[0].arguments) is dict


def test_unknown_tool_alone_is_reported_with_the_tool_list() -> None:
    for raw in [
        '{"name": "nope", "parameters": {}}',
        '<|python_tag|>{"name": "nope", "parameters": {}}',
        '{"type": "function", "function": {"name": "nope", "arguments": "{}"}}',
        '[{"name": "nope", "arguments": {}}]',
    ]:
        got = parse_completion(raw, tools=["search", "add"])
        assert got.tool_calls == ()
        (bad,) = got.malformed
        assert bad.name == "nope"
        assert bad.reason == "'nope' is not one of the tools; the tools are: add, search"
        assert got.wants_tools


def test_records_with_tool_names_are_not_calls() -> None:
    raw = 'Products: [{"name": "search", "id": 7}, {"name": "add", "id": 8}]'
    got = parse_completion(raw, tools=["search", "add"])
    assert got.content == raw
    assert not got.wants_tools
    got = parse_completion('{"name": "search"}', tools=["search", "add"])
    assert [c.name for c in got.tool_calls] == ["search"]


def test_builtin_mentioned_in_a_sentence_is_not_run() -> None:
    raw = 'brave_search.call(query="x") is how the model searches.'
    assert parse_completion(raw).content == raw
    assert not parse_completion(raw, tools=["brave_search"]).wants_tools
    parser = StreamParser()
    shown = "".join(parser.feed(ch) for ch in raw)
    assert parser.finish().content == raw
    assert raw.startswith(shown)
