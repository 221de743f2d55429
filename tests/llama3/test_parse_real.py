"""Real Llama 3.x outputs (`real_cases.py`): the comparison rule of data/README.md, the number of
botched calls reported, and the streaming parser agreeing with the whole-text parser."""

from __future__ import annotations

import warnings
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3 import StreamParser, parse_completion
from tests.llama3.real_cases import CASES


def test_enough_distinct_cases() -> None:
    assert len(CASES) >= 40
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert len({(c["raw"], str(c["tools"])) for c in CASES}) == len(CASES)
    assert all(c["source"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_real_case(case: dict[str, Any]) -> None:
    got = parse_completion(case["raw"], tools=case["tools"])
    assert [(c.name, dict(c.arguments)) for c in got.tool_calls] == case["calls"]
    if case["malformed"] is not None:
        assert len(got.malformed) == case["malformed"], got.malformed
    if case["content"] is not None:
        assert got.content.strip() == case["content"].strip()
    if not case["calls"] and not got.malformed:
        assert not got.wants_tools


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_real_case_streamed_char_by_char(case: dict[str, Any]) -> None:
    raw = case["raw"]
    parser = StreamParser(tools=case["tools"])
    shown = "".join(parser.feed(ch) for ch in raw)
    whole = parse_completion(raw, tools=case["tools"])
    assert parser.finish() == whole
    assert whole.content.startswith(shown)


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, len(CASES) - 1), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_real_case_streamed_random_chunks(index: int, cuts: list[int]) -> None:
    case = CASES[index]
    raw = case["raw"]
    parser = StreamParser(tools=case["tools"])
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    shown = "".join(parser.feed(raw[a:b]) for a, b in pairwise(bounds))
    whole = parse_completion(raw, tools=case["tools"])
    assert parser.finish() == whole
    assert whole.content.startswith(shown)


def test_odd_python_in_model_text_prints_no_warning() -> None:
    code = 'import re\nprint(re.findall("\\d+", "a1b22"), 1if True else 2)'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = parse_completion("<|python_tag|>" + code)
    assert caught == []
    assert got.tool_calls[0].arguments == {"code": code}
