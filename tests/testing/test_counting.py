"""The emulator counts prompts incrementally, and exactly: as if it counted each one whole."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from agent.llama3 import common_prefix_length, count_tokens, tokenizer_is_exact
from agent.testing import OllamaEmulator, answer
from agent.testing._completion import PromptCounter

exact_only = pytest.mark.skipif(
    not tokenizer_is_exact(), reason="incremental counting needs the exact tokenizer"
)

SYSTEM = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    + "You are a careful assistant who checks every number twice. " * 80
    + "<|eot_id|>"
)


def turn(role: str, text: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"


def conversation(steps: int, seed: int = 0) -> list[str]:
    """The prompts of a tool-using conversation, each extending the one before."""
    rng = random.Random(seed)
    prompt = SYSTEM + turn("user", "Add the numbers.")
    prompts = []
    for step in range(steps):
        prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n"
        prompts.append(prompt)
        call = json.dumps({"name": "add", "parameters": {"a": step, "b": rng.randint(0, 99)}})
        prompt += f"<|python_tag|>{call}<|eom_id|>" + turn("ipython", f"{step} + more, {rng}")
    return prompts


@exact_only
def test_counts_equal_whole_counts_and_only_new_text_is_tokenized() -> None:
    counter = PromptCounter()
    prompts = conversation(12)
    for prompt in prompts:
        counted = counter.count("m", prompt)
        assert counted.total == count_tokens(prompt)
    whole = sum(len(p) for p in prompts)
    # The first prompt, then what each step added (together: the last prompt), plus per step
    # the "\n\n" after the previous step's last header.
    assert counter.counted_chars <= len(prompts[-1]) + 2 * len(prompts)
    assert counter.counted_chars < whole / 5


@exact_only
def test_any_prefix_counts_like_counting_it_whole() -> None:
    counter = PromptCounter()
    prompt = conversation(4)[-1]
    counted = counter.count("m", prompt)
    special_starts = [i for i in range(len(prompt)) if prompt.startswith("<|", i)]
    lengths = [0, 1, len(prompt) - 1, len(prompt), len(prompt) + 5]
    # Just before, inside and just after special tokens, and anywhere else.
    lengths += [i + d for i in special_starts for d in (-1, 0, 3, 12)]
    lengths += random.Random(1).sample(range(len(prompt)), 40)
    for length in lengths:
        if length >= 0:
            assert counted.prefix(length) == count_tokens(prompt[:length]), length


@exact_only
def test_interleaved_conversations_and_a_diverging_prompt_stay_exact() -> None:
    counter = PromptCounter()
    first, second = conversation(6, seed=1), conversation(6, seed=2)
    for a, b in zip(first, second, strict=True):
        assert counter.count("m", a).total == count_tokens(a)
        assert counter.count("m", b).total == count_tokens(b)
    # A prompt that rewrites the middle of a remembered one (an edited history).
    edited = first[-1].replace("Add the numbers.", "Multiply them.")
    assert counter.count("m", edited).total == count_tokens(edited)
    # Models are counted apart, and forgetting starts over.
    assert counter.count("other", first[2]).total == count_tokens(first[2])
    counter.forget()
    assert counter.count("m", first[-1]).total == count_tokens(first[-1])


def test_a_custom_counter_is_called_on_whole_texts() -> None:
    seen: list[str] = []

    def words(text: str) -> int:
        seen.append(text)
        return len(text.split())

    counter = PromptCounter(words)
    prompt = conversation(3)[-1]
    counted = counter.count("m", prompt)
    assert counted.total == len(prompt.split())
    assert seen == [prompt]
    assert counted.prefix(100) == len(prompt[:100].split())


async def _run_conversation(emu: OllamaEmulator, prompts: list[str]) -> None:
    async with httpx.AsyncClient(base_url=emu.url) as http:
        for prompt in prompts:
            body = {"model": "llama3.1", "prompt": prompt, "raw": True, "stream": False}
            assert (await http.post("/api/generate", json=body)).status_code == 200


@exact_only
@pytest.mark.anyio
async def test_the_emulator_reports_what_whole_counting_would() -> None:
    prompts = conversation(10)
    call = json.dumps({"name": "add", "parameters": {"a": 1, "b": 2}})
    async with OllamaEmulator(answer(f"<|python_tag|>{call}")) as emu:
        await _run_conversation(emu, prompts)
        counted_chars = emu.prompt_counter.counted_chars
        records = emu.completions
    previous = ""
    for prompt, record in zip(prompts, records, strict=True):
        assert record.prompt_tokens == 1 + count_tokens(prompt)
        common = prompt[: common_prefix_length(previous, prompt)]
        cached = min(1 + count_tokens(common), record.prompt_tokens - 1) if previous else 0
        assert record.cached_tokens == cached
        assert record.prompt_eval_count == record.prompt_tokens - cached
        previous = prompt + record.completion
    assert counted_chars < sum(len(p) for p in prompts) / 4
