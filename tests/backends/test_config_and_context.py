"""Host parsing, backoff, pull progress, `num_ctx` sizing and the truncation check."""

from __future__ import annotations

import random

import pytest
from ollama._client import _parse_host

from agent.backends import PullProgress, Retries, parse_host
from agent.backends._context import PromptHistory, Remembered, size_context
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


def test_size_context_starts_with_room_to_grow() -> None:
    kwargs = {"model": "m", "num_predict": None, "reserve": 2048, "ceiling": 131072}
    # A small prompt: 8192, the floor (twice what it needs would be less).
    assert size_context(prompt_tokens=100, current=0, **kwargs) == (8192, 8092)
    # Twice what it needs (5000 + 2048), rounded up to a power of two.
    assert size_context(prompt_tokens=5000, current=0, **kwargs)[0] == 16384
    # A caller's num_predict replaces the reserve.
    assert size_context(
        model="m", prompt_tokens=1000, num_predict=50, reserve=2048, ceiling=131072, current=0
    ) == (8192, 50)


def test_size_context_is_kept_until_the_prompt_outgrows_it_then_doubles_at_least() -> None:
    kwargs = {"model": "m", "num_predict": None, "reserve": 2048, "ceiling": 131072}
    # Anything that fits keeps the current size (a new size reloads the model), even a prompt
    # far smaller: it never shrinks.
    for tokens in (10, 3000, 6144):
        assert size_context(prompt_tokens=tokens, current=8192, **kwargs)[0] == 8192
    # 6145 + 2048 no longer fits 8192: the next size holds twice that.
    assert size_context(prompt_tokens=6145, current=8192, **kwargs)[0] == 32768
    assert size_context(prompt_tokens=6145, current=65536, **kwargs)[0] == 65536


def test_size_context_sends_the_callers_size_whatever_the_prompt() -> None:
    kwargs = {"model": "m", "num_predict": None, "reserve": 2048, "fixed": True}
    for tokens in (10, 5000, 16000):
        assert size_context(prompt_tokens=tokens, current=0, ceiling=16384, **kwargs) == (
            16384,
            16384 - tokens,
        )
    # Even when another caller of this model asked for more: the setting is the size.
    assert size_context(prompt_tokens=10, current=65536, ceiling=16384, **kwargs)[0] == 16384
    with pytest.raises(ContextOverflowError):
        size_context(prompt_tokens=16300, current=0, ceiling=16384, **kwargs)


def test_size_context_caps_at_the_ceiling_and_limits_num_predict() -> None:
    num_ctx, num_predict = size_context(
        model="m", prompt_tokens=7000, num_predict=None, reserve=2048, ceiling=8000, current=0
    )
    assert (num_ctx, num_predict) == (8000, 1000)
    # A model whose whole context is smaller than the floor gets its whole context.
    assert size_context(
        model="m", prompt_tokens=100, num_predict=None, reserve=2048, ceiling=6000, current=0
    ) == (6000, 5900)


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


class _CountingCounter:
    """`count_tokens`, and the characters it was asked to count."""

    def __init__(self) -> None:
        self.chars = 0

    async def __call__(self, text: str) -> int:
        self.chars += len(text)
        return count_tokens(text)


async def shortfall(
    history: PromptHistory, text: str, sent: int, reported: int, *, model: str = "m"
) -> str | None:
    """The history's warning for `text` (exact counts, num_ctx 8192), as the backend asks it."""
    return await history.shortfall_warning(
        model=model,
        history=history.snapshot(model),
        text=text,
        sent=sent,
        reported=reported,
        num_ctx=8192,
        exact=True,
    )


@pytest.mark.anyio
async def test_history_tells_cache_hits_from_truncation() -> None:
    count = _CountingCounter()
    history = PromptHistory(count)
    prompt = "system text " * 50
    sent = 1 + count_tokens(prompt + "more")

    async def warn(
        seen: tuple[Remembered, ...], text: str, sent: int, reported: int, *, exact: bool = True
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
    history.remember("m", prompt, tokens=count_tokens(prompt))
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


@pytest.mark.anyio
async def test_a_cache_hit_on_the_previous_step_is_decided_without_counting() -> None:
    count = _CountingCounter()
    history = PromptHistory(count)
    others = ["another conversation " * (20 + i) for i in range(5)]
    step = "<|start_header_id|>system<|end_header_id|>\n\n" + "Be brief. " * 2000
    for other in others[:2]:
        history.remember("m", other, tokens=count_tokens(other))
    history.remember("m", step, tokens=count_tokens(step))
    for other in others[2:]:  # concurrent runs remembered since
        history.remember("m", other, tokens=count_tokens(other))
    text = step + "<|eot_id|>and what was added since"
    sent = 1 + count_tokens(text)
    evaluated = sent - 1 - count_tokens(step)
    count.chars = 0
    for reported in (evaluated, evaluated - 3, 1):
        assert await shortfall(history, text, sent, reported) is None
    assert count.chars == 0
    # A report the previous step cannot explain is looked at closely: counted, and a warning.
    warning = await shortfall(history, text, sent, evaluated - 200)
    assert warning is not None
    assert count.chars > 0


@pytest.mark.anyio
async def test_a_prompt_sent_whole_before_is_a_cache_hit_without_counting() -> None:
    """Many runs open with the same prompt: the next run's first prompt was sent whole (within
    a longer text: an earlier run's step), so the server may hold all of it."""
    count = _CountingCounter()
    history = PromptHistory(count)
    opening = "<|start_header_id|>system<|end_header_id|>\n\n" + "Be brief. " * 500
    step = opening + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nDone."
    history.remember("m", step, tokens=count_tokens(step))
    sent = 1 + count_tokens(opening)
    count.chars = 0
    assert await shortfall(history, opening, sent, 1) is None
    assert count.chars == 0
    # A text that was not sent before still gets its warning.
    other = "<|start_header_id|>user<|end_header_id|>\n\n" + "x " * 500
    assert await shortfall(history, other, sent, 1) is not None


@pytest.mark.anyio
async def test_a_step_pushed_out_by_many_other_runs_is_still_found_without_counting() -> None:
    """A thousand runs at once: the newest texts are other runs', and a run's previous step
    has left the history's `depth`; its next prompt still extends it, found by its index."""
    count = _CountingCounter()
    history = PromptHistory(count, depth=3)
    step = "<|start_header_id|>user<|end_header_id|>\n\n" + "Add the numbers. " * 500
    history.remember("m", step, tokens=count_tokens(step))
    for i in range(50):  # concurrent runs remembered since
        other = f"another conversation {i} " * 40
        history.remember("m", other, tokens=count_tokens(other))
    assert all(r.text != step for r in history.snapshot("m"))
    text = step + "<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
    sent = 1 + count_tokens(text)
    evaluated = sent - 1 - count_tokens(step)
    count.chars = 0
    assert await shortfall(history, text, sent, evaluated) is None
    assert count.chars == 0
    # Remembered for another model only: no evidence for this one.
    assert await shortfall(history, text, sent, evaluated, model="other") is not None
    # More missing than the step explains.
    assert await shortfall(history, text, sent, evaluated - 200) is not None


def test_history_keeps_the_best_count_of_a_text_and_a_bounded_depth() -> None:
    async def count(text: str) -> int:
        return count_tokens(text)

    history = PromptHistory(count, depth=3)
    history.remember("m", "abc", tokens=1)
    history.remember("m", "abc", tokens=2)
    history.remember("m", "abc", tokens=1)
    assert history.snapshot("m") == (Remembered(text="abc", tokens=2),)
    for text in ("d", "e", "f"):
        history.remember("m", text, tokens=1)
    assert [r.text for r in history.snapshot("m")] == ["d", "e", "f"]
    assert history.snapshot("other") == ()


def test_family_and_context_length_from_show() -> None:
    from agent.backends._context import context_length, family

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
