"""Hypothesis: the parser never raises (nor falls back), and streaming agrees with it, on random
text and on random mutations of every reference and extra case."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3 import StreamParser, parse_completion
from agent.llama3._parse import _Machine
from agent.llama3._types import ParsedCompletion
from tests.llama3 import forms, real_cases
from tests.llama3.cases import parse_cases

SEEDS = [c["raw"] for c in parse_cases() + forms.CASES + real_cases.CASES]
FRAGMENTS = [
    "<|python_tag|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|",
    "|>",
    "<function=",
    "</function>",
    ">",
    "brave_search.call(",
    "python.call(",
    "```",
    "```json\n",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    '"',
    "'",
    "\\",
    '\\"',
    ":",
    ",",
    ";",
    "=",
    "\n",
    " ",
    '"name"',
    '"parameters"',
    '"arguments"',
    "get_weather",
    "query=",
    "True",
    "null",
    "\u200c",
    "é",
    "🦙",
    "get_weather(",
    "[get_weather(",
    "add-note(",
    "-",
    "), ",
    "} {",
    "1e999",
]
TOOLS: st.SearchStrategy[list[str] | None] = (
    st.none() | st.just(["get_weather", "brave_search"]) | st.just([])
)


def strict(text: str, tools: list[str] | None) -> ParsedCompletion:
    """The parse without the never-raise safety net, so a bug shows as an exception."""
    machine = _Machine(tools)
    machine.feed(text)
    return machine.finish()


pieces = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate", "reverse"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "truncate":
            text = text[:i]
        else:
            text = text[:i] + text[i:j][::-1] + text[j:]
    return str(text)


def check(text: str, tools: list[str] | None, cuts: list[int]) -> None:
    whole = strict(text, tools)
    assert whole == parse_completion(text, tools=tools)
    assert all(isinstance(c.arguments, dict) for c in whole.tool_calls)
    parser = StreamParser(tools=tools)
    shown = ""
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    for a, b in pairwise(bounds):
        shown += parser.feed(text[a:b])
    assert parser.finish() == whole
    assert not parser._broken
    assert whole.content.startswith(shown)
    assert_nothing_botched_shown(parser, shown)


def assert_nothing_botched_shown(parser: StreamParser, shown: str) -> None:
    """What `feed` returned ends before the first botched call's text in the content."""
    outcome = parser._machine.prose.outcome
    if outcome.botched_at is not None:
        assert outcome.content[outcome.botched_at] in {m.text for m in outcome.malformed}
        assert len(shown) <= len("".join(outcome.content[: outcome.botched_at]).lstrip())


@settings(max_examples=400, deadline=None)
@given(text=pieces, tools=TOOLS, cuts=st.lists(st.integers(0, 500), max_size=12))
def test_random_fragments(text: str, tools: list[str] | None, cuts: list[int]) -> None:
    check(text, tools, cuts)


@settings(max_examples=400, deadline=None)
@given(text=mutated(), tools=TOOLS, cuts=st.lists(st.integers(0, 500), max_size=12))
def test_mutated_cases(text: str, tools: list[str] | None, cuts: list[int]) -> None:
    check(text, tools, cuts)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), tools=TOOLS)
def test_arbitrary_unicode(text: str, tools: list[str] | None) -> None:
    check(text, tools, [len(text) // 3, len(text) // 2])


def test_pathological_inputs() -> None:
    for text in [
        "[" * 5000,
        "{" * 5000,
        '{"a":' * 3000,
        "[get_weather(x=" * 2000,
        "(" * 10_000,
        "<function=" * 1000,
        '"' * 10_000,
        "\\" * 10_000,
        "<|python_tag|>" + "[" * 3000,
        "<|python_tag|>" + "(" * 300 + ")" * 300,
        "x" * 100_000,
        "[f(a='), " + "g(b=1), " * 20_000 + "]",
        "[" + "{}" * 20_000 + "]",
    ]:
        check(text, None, [7, 100, 999])


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1000, 5000), cuts=st.lists(st.integers(0, 6000), max_size=12))
def test_long_prose_streams_as_whole(size: int, cuts: list[int]) -> None:
    # The scanner drops committed text as a stream goes on; a trigger must still see the
    # character before it (`xyzbrave_search.call(` is no call, however the text is split).
    text = ("word " * size)[:size] + 'xyzbrave_search.call(query="a")\nDone.'
    check(text, None, [*cuts, size + 3])
    check(text, ["brave_search"], [*cuts, size + 3])
    assert not parse_completion(text).tool_calls
