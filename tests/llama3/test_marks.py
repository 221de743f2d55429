"""The pieces of incremental counting: common prefixes and where special tokens end."""

from __future__ import annotations

import random

from agent.llama3 import (
    EOT,
    SPECIAL_TOKENS,
    common_prefix_length,
    last_special_token_end,
    special_token_spans,
)


def test_common_prefix_length() -> None:
    assert common_prefix_length("abcdef", "abcxyz") == 3
    assert common_prefix_length("", "abc") == 0
    assert common_prefix_length("same", "same") == 4
    assert common_prefix_length("abc", "abcdef") == 3
    assert common_prefix_length("abcdef", "abc") == 3
    assert common_prefix_length("abXdef", "abcdef") == 2
    assert common_prefix_length("", "x") == 0


def test_common_prefix_length_matches_a_character_walk() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = "".join(rng.choice("ab") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("ab") for _ in range(rng.randint(0, 12)))
        walk = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        assert common_prefix_length(a, b) == (min(len(a), len(b)) if walk is None else walk)


def test_special_token_spans_skip_lookalikes() -> None:
    text = "a<|eot_id|>b<|not_special|><|<|start_header_id|>x<|end_header_id|>"
    spans = list(special_token_spans(text))
    assert [text[s:e] for s, e in spans] == [
        "<|eot_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
    ]
    # Only tokens lying wholly after `start`.
    assert [text[s:e] for s, e in special_token_spans(text, spans[0][0] + 1)] == [
        "<|start_header_id|>",
        "<|end_header_id|>",
    ]


def test_last_special_token_end_agrees_with_the_spans() -> None:
    rng = random.Random(3)
    pieces = [*SPECIAL_TOKENS, "<|fake|>", "|>", "<|", "x", "hello ", "||>"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 15)))
        spans = list(special_token_spans(text))
        assert last_special_token_end(text) == (spans[-1][1] if spans else None), text


def test_last_special_token_end_bounds() -> None:
    text = EOT + "a|>" * 10
    assert last_special_token_end(text) == len(EOT)
    assert last_special_token_end(text, max_back=10) is None  # ten lookalikes inspected
    assert last_special_token_end(text, len(EOT) - 2) == len(EOT)  # its "|>" is after `start`
    assert last_special_token_end(text, len(EOT) - 1) is None
