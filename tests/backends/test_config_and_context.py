"""Host parsing, backoff, pull progress, `num_ctx` sizing and the truncation check."""

from __future__ import annotations

import random

import pytest
from ollama._client import _parse_host

from agent.backends import PullProgress, Retries, parse_host
from agent.backends._context import PromptHistory, common_prefix_length, size_context
from agent.errors import ContextOverflowError
from agent.llama3 import count_tokens

HOSTS = [
    None,
    "",
    "1.2.3.4",
    ":56789",
    "1.2.3.4:56789",
    "http://1.2.3.4",
    "https://1.2.3.4",
    "https://example.com:56789/path",
    "example.com/",
    "example.com:56789/path/",
    "[0001:002:003:0004::1]",
    "https://[0001:002:003:0004::1]:56789/path",
    "0.0.0.0",
]


@pytest.mark.parametrize("host", HOSTS)
def test_parse_host_is_the_clients(host: str | None) -> None:
    assert parse_host(host) == _parse_host(host)


def test_backoff_grows_is_capped_and_jittered() -> None:
    retries = Retries(backoff_base=1.0, backoff_max=4.0)
    rng = random.Random(7)
    waits = [[retries.backoff(n, rng) for _ in range(50)] for n in (1, 2, 3, 6)]
    assert all(0.5 <= w <= 1.0 for w in waits[0])
    assert all(1.0 <= w <= 2.0 for w in waits[1])
    assert all(2.0 <= w <= 4.0 for w in waits[2] + waits[3])
    assert len(set(waits[3])) > 1


def test_pull_progress_fraction() -> None:
    assert PullProgress(status="pulling x", total=200, completed=50).fraction == 0.25
    assert PullProgress(status="success").fraction is None


def test_size_context_grows_in_powers_of_two_and_never_shrinks() -> None:
    kwargs = {"model": "m", "num_predict": None, "reserve": 2048, "ceiling": 131072}
    assert size_context(prompt_tokens=100, current=0, **kwargs) == (4096, 3996)
    assert size_context(prompt_tokens=3000, current=0, **kwargs)[0] == 8192
    assert size_context(prompt_tokens=100, current=8192, **kwargs)[0] == 8192
    num_ctx, num_predict = size_context(
        model="m", prompt_tokens=1000, num_predict=50, reserve=2048, ceiling=131072, current=0
    )
    assert (num_ctx, num_predict) == (4096, 50)


def test_size_context_caps_at_the_ceiling_and_limits_num_predict() -> None:
    num_ctx, num_predict = size_context(
        model="m", prompt_tokens=7000, num_predict=None, reserve=2048, ceiling=8000, current=0
    )
    assert (num_ctx, num_predict) == (8000, 1000)


def test_overflow_says_what_it_needs_and_has() -> None:
    with pytest.raises(ContextOverflowError) as caught:
        size_context(
            model="llama3.1",
            prompt_tokens=8000,
            num_predict=500,
            reserve=2048,
            ceiling=8192,
            current=0,
        )
    assert (caught.value.needed, caught.value.available) == (8500, 8192)
    assert "8500" in str(caught.value)
    assert "8192" in str(caught.value)


def test_common_prefix_length() -> None:
    assert common_prefix_length("abcdef", "abcxyz") == 3
    assert common_prefix_length("", "abc") == 0
    assert common_prefix_length("same", "same") == 4


@pytest.mark.anyio
async def test_history_tells_cache_hits_from_truncation() -> None:
    async def count(text: str) -> int:
        return count_tokens(text)

    history = PromptHistory(count)
    prompt = "system text " * 50
    sent = 1 + count_tokens(prompt + "more")

    async def warn(
        seen: tuple[str, ...], text: str, sent: int, reported: int, *, exact: bool = True
    ) -> str | None:
        return await history.shortfall_warning(
            model="m",
            history=seen,
            text=text,
            sent=sent,
            reported=reported,
            num_ctx=4096,
            exact=exact,
        )

    assert await warn((), prompt + "more", sent, sent) is None
    history.remember("m", prompt)
    seen = history.snapshot("m")
    cached = await history.cacheable_tokens(seen, prompt + "more")
    assert cached == 1 + count_tokens(prompt)
    # Only the new tokens evaluated: a cache hit, no warning.
    assert await warn(seen, prompt + "more", sent, sent - cached) is None
    # Without that history the same report is a shortfall.
    assert await warn((), prompt + "more", sent, sent - cached) is not None
    warning = await warn(seen, "other " * 300, 600, 100)
    assert warning is not None
    assert "truncated" in warning
    assert "600" in warning
    # An estimated count is only trusted for large gaps.
    assert await warn(seen, "other " * 300, 600, 400, exact=False) is None
    assert await warn(seen, "other " * 300, 600, 200, exact=False) is not None


def test_family_and_context_length_from_show() -> None:
    from agent.backends._modelinfo import context_length, family

    assert family("llama3.2:3b", {}) == "3.2"
    assert family("my-model", {"general.basename": "Llama-3.3"}) == "3.3"
    assert family("llama3.2-vision:11b", {}) == "3.1"  # vision models use the 3.1 format
    assert family("mistral:7b", {"general.basename": "Mistral"}) == "unknown"
    assert context_length({"general.architecture": "llama", "llama.context_length": 8192}) == 8192
    assert context_length({"general.architecture": "x", "qwen2.context_length": 32768}) == 32768
    assert context_length({}) == 2048


def test_host_comes_from_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.backends import OllamaBackend

    monkeypatch.setenv("OLLAMA_HOST", "example.com:1234")
    assert OllamaBackend().url == "http://example.com:1234"
    assert OllamaBackend("https://h").url == "https://h:443"
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaBackend().url == "http://127.0.0.1:11434"
