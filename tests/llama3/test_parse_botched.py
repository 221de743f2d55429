"""A botched call is never streamed as answer text: `feed` stops showing where it starts, while
`content` keeps it (as Meta's parser does) and the caller shows the rest without it."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3 import StreamParser, parse_completion
from tests.llama3.test_parse_fuzz import assert_nothing_botched_shown

GARBLED = '{"name": "add", "parameters": {"a": 1 "b": 2}}'
# (completion, what feed may show, the prose after the botched call, the botched text)
CASES = [
    (f"{GARBLED}\nSo the answer is 3.", "", "So the answer is 3.", GARBLED),
    ("[add(a=1, b=)] and then prose", "", "and then prose", "[add(a=1, b=)]"),
    (
        '<function=nope>{"a": 1}</function> trailing',
        "",
        "trailing",
        '<function=nope>{"a": 1}</function>',
    ),
    (f"Let me add.\n{GARBLED}\nSo the answer is 3.", "Let me add.", "So the answer is 3.", GARBLED),
    (f"First: {GARBLED} Then: more text.", "First:", "Then: more text.", GARBLED),
]


def stream(raw: str, bounds: list[int]) -> tuple[str, StreamParser]:
    parser = StreamParser(tools=["add"])
    shown = "".join(parser.feed(raw[a:b]) for a, b in pairwise(bounds))
    return shown, parser


def check(case: tuple[str, str, str, str], bounds: list[int]) -> None:
    raw, before, after, botched = case
    shown, parser = stream(raw, bounds)
    whole = parse_completion(raw, tools=["add"])
    assert parser.finish() == whole
    assert not whole.tool_calls
    (bad,) = whole.malformed
    assert bad.text == botched
    assert shown == before
    assert botched not in shown
    assert_nothing_botched_shown(parser, shown)
    # The contract: content starts with what was shown; the rest, minus the botched text,
    # is the prose still to show (what the loop does once the step's parse is done).
    assert whole.content.startswith(shown)
    rest = whole.content[len(shown) :].replace(bad.text, "", 1).strip()
    assert rest == after


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(CASES) - 1), cuts=st.lists(st.integers(0, 200), max_size=30))
def test_botched_call_is_not_streamed_whatever_the_chunks(index: int, cuts: list[int]) -> None:
    raw = CASES[index][0]
    check(CASES[index], sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)}))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0][:20])
def test_botched_call_is_not_streamed_char_by_char(case: tuple[str, str, str, str]) -> None:
    check(case, list(range(len(case[0]) + 1)))


def test_prose_before_a_good_call_and_after_it_still_streams() -> None:
    parser = StreamParser(tools=["add"])
    shown = parser.feed('Adding.\n{"name": "add", "parameters": {"a": 1, "b": 2}}\nThen ')
    shown += parser.feed("more.")
    assert shown == "Adding.\n\nThen more."
    assert parser.finish().tool_calls[0].arguments == {"a": 1, "b": 2}


def test_nothing_is_shown_after_a_botched_call_however_much_prose_follows() -> None:
    parser = StreamParser(tools=["add"])
    assert parser.feed(f"{GARBLED}\n") == ""
    assert all(parser.feed("More prose. ") == "" for _ in range(50))
    assert parser.shown == ""
    result = parser.finish()
    assert result.content.startswith(GARBLED)
    assert result.content.endswith("More prose.")
