"""Every parse case of tests/llama3/data/parse_cases.json, by the README's comparison rule,
whole and streamed with random chunk boundaries."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3 import ParsedCompletion, StreamParser, parse_completion
from tests.llama3.cases import expected_parse, parse_cases

CASES = parse_cases()


def assert_matches(got: ParsedCompletion, expected: dict[str, Any]) -> None:
    """README rule: calls exactly (names, arguments, order); without calls, content after
    stripping surrounding whitespace; with calls, prose may be kept or dropped."""
    calls = [{"name": c.name, "arguments": dict(c.arguments)} for c in got.tool_calls]
    want = [{"name": c["name"], "arguments": c["arguments"]} for c in expected["tool_calls"]]
    assert calls == want
    if not want:
        assert got.content.strip() == expected["content"].strip()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_parse_case(case: dict[str, Any]) -> None:
    assert_matches(parse_completion(case["raw"]), expected_parse(case))


def test_all_cases_present() -> None:
    assert len(CASES) >= 70


def stream(raw: str, cuts: list[int], tools: list[str] | None = None) -> tuple[str, StreamParser]:
    parser = StreamParser(tools=tools)
    shown = ""
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    for a, b in pairwise(bounds):
        shown += parser.feed(raw[a:b])
    return shown, parser


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, len(CASES) - 1), cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_streamed_equals_whole_on_every_case(index: int, cuts: list[int]) -> None:
    raw = CASES[index]["raw"]
    shown, parser = stream(raw, cuts)
    whole = parse_completion(raw)
    assert parser.finish() == whole
    assert whole.content.startswith(shown)
    assert parser.shown == shown
    assert not parser._broken


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_streamed_char_by_char(case: dict[str, Any]) -> None:
    raw = case["raw"]
    shown, parser = stream(raw, list(range(len(raw))))
    whole = parse_completion(raw)
    assert parser.finish() == whole
    assert whole.content.startswith(shown)


TAGGED = [
    '{"name": "add", "parameters": {"a": 1, "b": 2}}',
    ' {"name": "add", "arguments": {"a": 1}} \n',
    '{"type": "function", "name": "add", "parameters": {}}',
    '[{"name": "add", "parameters": {"a": 1}}, {"name": "sub", "parameters": {"a": 2}}]',
    '{"name": "nope", "parameters": {"a": 1}}',
    '{"name": "add"}',
    '{"name": "add", "parameters": {"a": "<|eot_id|>"}}',
    '{"name": "add", "parameters": {"a": "x<|y"}}',
    '{"name": "add", "parameters": {"a": 1}',
    "{}",
    "",
    "   ",
    'brave_search.call(query="x")',
    "print(1)",
    '{"name": "add", "parameters": {"a": 1}} then prose',
]
ENDINGS = [
    "",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|eom_id|>after",
    "<|eom_id|><|eot_id|>",
]


@pytest.mark.parametrize("tools", [None, ["add", "sub"], ["add"], ["code_interpreter"]])
@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("payload", TAGGED)
def test_a_tagged_call_reads_the_same_without_the_machine(
    payload: str, ending: str, tools: list[str] | None
) -> None:
    # parse_completion reads the usual shape (tag, JSON calls, end token) by a shortcut; the
    # machine (which StreamParser runs) must make the same of every text, that shape or not.
    text = "<|python_tag|>" + payload + ending
    parser = StreamParser(tools=tools)
    parser.feed(text)
    assert parse_completion(text, tools=tools) == parser.finish()


@pytest.mark.parametrize(
    "text",
    [
        '<|python_tag|>{"name": "f", "parameters": {"a": 1}}<|eom_id|>',
        '<|python_tag|>{"name": "f", "parameters": {"a": 1}} ok',
        "<|python_tag|>print(1)",
        'Sure. {"name": "f", "parameters": {"a": 1}}',
    ],
)
def test_tools_given_as_an_iterator_are_read_once(text: str) -> None:
    names = ["f", "code_interpreter"]
    assert parse_completion(text, tools=iter(names)) == parse_completion(text, tools=names)
