"""`TokenCounter`: a conversation's prompts are counted incrementally, exactly, off the loop."""

from __future__ import annotations

import itertools
import threading

import anyio
import pytest

from agent.backends import GenerateOptions, OllamaBackend
from agent.backends._context import TokenCounter
from agent.llama3 import count_tokens, tokenizer_is_exact
from agent.testing import OllamaEmulator, answer

pytestmark = pytest.mark.anyio

HEADER = "<|start_header_id|>{}<|end_header_id|>\n\n"
SYSTEM = HEADER.format("system") + "Answer briefly. " * 200 + "<|eot_id|>"


def conversation(steps: int, *, result: str = "ok", question: str = "Look it up.") -> list[str]:
    """The prompt of each step: every step adds a tool call and its result."""
    text = SYSTEM + HEADER.format("user") + question + "<|eot_id|>"
    prompts = [text + HEADER.format("assistant")]
    for step in range(steps):
        # A completion starts right after the header's "\n\n": a BPE-sensitive join.
        text += HEADER.format("assistant") + f'{{"name": "search", "parameters": {{"q": {step}}}}}'
        text += "<|eom_id|>" + HEADER.format("ipython") + f"{result} {step}" * 40 + "<|eot_id|>"
        prompts.append(text + HEADER.format("assistant"))
    return prompts


async def test_a_conversation_is_counted_exactly_and_only_what_is_new() -> None:
    counter = TokenCounter()
    prompts = conversation(8)
    for prompt in prompts:
        assert await counter.count(prompt) == count_tokens(prompt)
        # The cache check of the same step: the prefix the server may hold, plus a completion.
        partial = prompt + "Sure"
        assert await counter.count(partial) == count_tokens(partial) + (
            0 if tokenizer_is_exact() else 1
        )
    assert counter.misses == 1  # only the first prompt was counted whole
    assert counter.hits == 2 * len(prompts) - 1
    # Each step tokenized its new text only, not the whole conversation again.
    added = sum(len(b) - len(a) for a, b in itertools.pairwise(prompts))
    assert counter.counted_chars < len(prompts[0]) + 2 * added + 10 * len(prompts)
    assert counter.counted_chars < sum(len(p) for p in prompts) // 3


async def test_the_short_pieces_after_cuts_are_tokenized_once() -> None:
    # Every prompt ends with the assistant header's "\n\n" past the last cut: the tokenizer's
    # fixed cost per call is most of such a piece's, so its count is remembered.
    asked: list[str] = []

    def count(text: str) -> int:
        asked.append(text)
        return count_tokens(text)

    counter = TokenCounter(count)
    prompts = conversation(4)
    for prompt in prompts:
        assert await counter.count(prompt) == count_tokens(prompt)
    asked.clear()
    for prompt in prompts:  # the same conversation again (another run, the same opening)
        assert await counter.count(prompt) == count_tokens(prompt)
    assert asked == []


async def test_a_changed_prefix_is_never_mistaken_for_a_known_one() -> None:
    counter = TokenCounter()
    first = conversation(3)[-1]
    await counter.count(first)
    # Same length, same last characters, one word changed near the start.
    edited = first.replace("Answer briefly.", "Answer brieflY.", 1)
    assert len(edited) == len(first)
    assert await counter.count(edited) == count_tokens(edited)
    assert counter.hits == 0


async def test_an_estimate_joined_from_pieces_stays_on_the_safe_side() -> None:
    # Like the estimate without the tokenizer: not additive, because it rounds down at the end.
    def estimate(text: str) -> int:
        return len(text) * 11 // 40

    counter = TokenCounter(estimate, exact=lambda: False)
    prompts = conversation(6)
    for prompt in prompts:
        counted = await counter.count(prompt)
        joins = 2 * len(prompts)  # at most two joins per count, and counts build on counts
        assert estimate(prompt) <= counted <= estimate(prompt) + joins
    assert counter.hits == len(prompts) - 1


async def test_long_new_text_is_counted_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    def count(text: str) -> int:
        threads.append(threading.current_thread())
        return count_tokens(text)

    counter = TokenCounter(count, thread_chars=20_000)
    await counter.count("warm up")  # the first count (which loads the tokenizer) is off-loop
    assert threads.pop() is not threading.main_thread()
    small = conversation(1)[-1]
    await counter.count(small)
    assert threads
    assert all(t is threading.main_thread() for t in threads)
    threads.clear()
    big = conversation(2, result="x" * 400)[-1]
    assert len(big) - len(small) > 20_000
    assert await counter.count(big) == count_tokens(big)
    assert threads
    assert all(t is not threading.main_thread() for t in threads)


async def test_the_memory_of_counts_is_bounded() -> None:
    counter = TokenCounter(capacity=2)
    runs = [conversation(1, question=name) for name in ("alpha?", "beta?", "gamma?")]
    for prompts in runs:
        await counter.count(prompts[0])
    assert counter.misses == 3
    # The latest conversation is still known; the first one's count was dropped.
    assert await counter.count(runs[2][1]) == count_tokens(runs[2][1])
    assert (counter.hits, counter.misses) == (1, 3)
    assert await counter.count(runs[0][1]) == count_tokens(runs[0][1])
    assert (counter.hits, counter.misses) == (1, 4)


async def test_runs_starting_together_load_the_tokenizer_once_off_the_loop() -> None:
    threads: list[threading.Thread] = []

    def count(text: str) -> int:
        threads.append(threading.current_thread())
        return count_tokens(text)

    async with OllamaEmulator(answer("ok")) as emu, OllamaBackend(emu.url) as backend:
        backend.token_counter = TokenCounter(count)
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(drain, backend)
    workers = [t for t in threads if t is not threading.main_thread()]
    assert len(workers) == 1  # the warm-up; the 20 short prompts were counted on the loop
    assert threading.main_thread() in threads  # (the rest of each from remembered counts)


async def drain(backend: OllamaBackend) -> None:
    prompt = "<|begin_of_text|>" + conversation(0)[0]
    async for _ in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
        pass
