"""Token counts: exact against Meta's ids with the tokenizer extra, a safe estimate without."""

from __future__ import annotations

from typing import Any

import pytest

from agent.llama3 import _special as _tokens
from agent.llama3 import count_tokens, tokenizer_is_exact
from tests.llama3.cases import render_cases
from tests.llama3.token_corpus import ADVERSARIAL, TYPICAL

PROMPTS = [c for c in render_cases() if "expected_prompt" in c]
exact_only = pytest.mark.skipif(not tokenizer_is_exact(), reason="needs the tokenizer extra")


@pytest.fixture
def estimated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_encoding", lambda: None)


@exact_only
@pytest.mark.parametrize("case", PROMPTS, ids=lambda c: c["id"])
def test_exact_counts_match_meta(case: dict[str, Any]) -> None:
    ids = _tokens.encode(case["expected_prompt"])
    assert count_tokens(case["expected_prompt"]) == len(ids)
    if case["whole_string_encode_matches_tokens"]:
        assert ids == case["expected_tokens"]
        assert len(ids) == case["expected_token_count"]
    else:
        # Meta tokenizes per segment; the server (and we) tokenize the whole string: a leading
        # "\n" merges with the header's "\n\n", and special-token text in content is parsed.
        assert len(ids) < case["expected_token_count"]


@exact_only
def test_exact_long_text_is_chunked_safely() -> None:
    text = "a" * 60_000 + " " * 30_000 + "word " * 10_000
    assert count_tokens(text) == sum(count_tokens(c) for c in _tokens._chunks(text))
    assert count_tokens(text) > 10_000


def test_special_tokens_count_one_each(estimated: None) -> None:
    assert not tokenizer_is_exact()
    assert count_tokens("<|begin_of_text|><|eot_id|>") == 2
    assert count_tokens("") == 0


@pytest.mark.parametrize(
    "case", [c for c in PROMPTS if c["whole_string_encode_matches_tokens"]], ids=lambda c: c["id"]
)
def test_estimate_is_above_meta_and_not_wildly(case: dict[str, Any], estimated: None) -> None:
    estimate = count_tokens(case["expected_prompt"])
    assert case["expected_token_count"] <= estimate <= 2 * case["expected_token_count"]


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog. " * 40,
        "def f(x):\n    return {'a': [x, x * 2]}\n" * 30,
        '{"name": "get_weather", "parameters": {"city": "Paris", "n": 12345}}' * 20,
        "QmFzZTY0IGVuY29kZWQgcmFuZG9tIGRhdGEgaGVyZQ==" * 20,
        "日本語で答えてください。Привет, мир! مرحبا 🦙✅" * 20,
    ],
)
def test_estimate_does_not_undercount(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not tokenizer_is_exact():
        pytest.skip("needs the tokenizer extra to know the exact count")
    exact = count_tokens(text)
    monkeypatch.setattr(_tokens, "_encoding", lambda: None)
    assert exact <= count_tokens(text) <= 2.5 * exact


@exact_only
def test_estimate_ratio_across_a_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstring's claims: typical text is never under-counted (nor more than doubled);
    text built against the estimate is under-counted by 10 % at most, except random ideographs
    (the documented gap: only the vocabulary tells rare ideographs from common ones)."""
    texts = {**TYPICAL, **ADVERSARIAL}
    exact = {name: count_tokens(text) for name, text in texts.items()}
    monkeypatch.setattr(_tokens, "_encoding", lambda: None)
    ratio = {name: count_tokens(text) / exact[name] for name, text in texts.items()}
    typical = {name: round(ratio[name], 2) for name in TYPICAL}
    assert min(typical.values()) >= 1.0, typical
    assert max(typical.values()) <= 2.0, typical
    adversarial = {name: round(ratio[name], 2) for name in ADVERSARIAL if name != "random_cjk"}
    assert min(adversarial.values()) >= 0.9, adversarial
    assert ratio["random_cjk"] >= 0.65


def test_estimate_survives_lone_surrogates(estimated: None) -> None:
    # Model output decoded with errors="surrogateescape" can hold them.
    assert count_tokens("a\ud800b\udfff") >= 3


def test_encode_without_the_extra_says_how_to_get_it(estimated: None) -> None:
    with pytest.raises(RuntimeError, match=r"llama-agent\[tokenizer\]"):
        _tokens.encode("hi")
