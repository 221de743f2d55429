"""Counting prompt tokens on the emulator: only what is new since a recent prompt of the model.

The emulator counts every prompt (its `prompt_eval_count`, its truncation) and the part of it
that the emulated KV cache holds. A conversation sends a slightly longer prompt at every step, so
counting each prompt whole costs each step more than the step before, and a benchmark of many
runs ends up measuring the emulator's tokenizer. `PromptCounter` keeps, for the last few prompts
of each model, the token count at the end of every special token in them (*marks*). A new prompt
starts from the longest of those prompts it begins with (usually its own conversation's previous
step): the marks up to there are reused, and only the text after them is tokenized. The count of
any prefix (the cached part) is then the count at the last mark before its end plus the few
characters after that mark.

Exact, not an estimate (`agent.llama3._marks`): Llama 3's `count_tokens` splits the text at
special tokens and counts the pieces on their own, as llama.cpp does (no BPE merge crosses a
special token), so with the exact tokenizer count(a + b) == count(a) + count(b) whenever `a`
ends with a special token. Any other counter (the estimate used without the `tokenizer` extra,
which rounds once over the whole text, or one a test passes in) is not additive that way: it is
called on each whole text instead, so its counts stay what it says they are, just slower.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.llama3 import common_prefix_length, count_tokens, special_token_spans, tokenizer_is_exact


@dataclass(frozen=True, kw_only=True)
class CountedPrompt:
    """A prompt, its token count (no BOS), and the counts at the end of its special tokens."""

    text: str
    total: int
    marks: tuple[int, ...]  # 0, then the position just after each special token
    counts: tuple[int, ...]  # tokens in text[:mark], per mark
    count: Callable[[str], int]

    def prefix(self, length: int) -> int:
        """Tokens in `text[:length]`, counting only the characters after the last mark."""
        if length >= len(self.text):
            return self.total
        index = bisect_right(self.marks, length) - 1
        mark = self.marks[index]
        return self.counts[index] + (self.count(self.text[mark:length]) if length > mark else 0)


class PromptCounter:
    """Counts the prompts of each model, reusing the counts of its last `depth` prompts.

    `count`: the token counter (None: Llama 3's `count_tokens`, incremental when it is exact).
    """

    def __init__(self, count: Callable[[str], int] | None = None, *, depth: int = 8) -> None:
        self.counts_with = count or count_tokens
        self._default = self.counts_with is count_tokens
        self._depth = depth
        self._recent: dict[str, deque[CountedPrompt]] = {}
        self.counted_chars = 0  # characters actually tokenized, for tests and benchmarks

    def _counter(self, text: str) -> int:
        self.counted_chars += len(text)
        return self.counts_with(text)

    def count(self, model: str, prompt: str) -> CountedPrompt:
        """Count `prompt` (without the BOS the server adds)."""
        if not (self._default and tokenizer_is_exact()):
            total = self._counter(prompt)
            return CountedPrompt(
                text=prompt, total=total, marks=(0,), counts=(0,), count=self._counter
            )
        recent = self._recent.setdefault(model, deque(maxlen=self._depth))
        base = _best_start(recent, prompt)
        if base is None:
            marks, counts, start = [0], [0], 0
        else:
            reach = common_prefix_length(base.text, prompt)
            keep = bisect_right(base.marks, reach)
            marks, counts = list(base.marks[:keep]), list(base.counts[:keep])
            start = marks[-1]
        total = counts[-1]
        position = start
        for opening, end in special_token_spans(prompt, start):
            if opening > position:
                total += self._counter(prompt[position:opening])
            total += 1
            position = end
            marks.append(position)
            counts.append(total)
        if position < len(prompt):
            total += self._counter(prompt[position:])
        counted = CountedPrompt(
            text=prompt,
            total=total,
            marks=tuple(marks),
            counts=tuple(counts),
            count=self._counter,
        )
        recent.append(counted)
        return counted

    def forget(self) -> None:
        self._recent.clear()


def _best_start(recent: deque[CountedPrompt], prompt: str) -> CountedPrompt | None:
    """The longest recent prompt that `prompt` starts with; else the newest (shares a prefix)."""
    best: CountedPrompt | None = None
    for counted in recent:
        if len(counted.text) > (len(best.text) if best else -1) and prompt.startswith(counted.text):
            best = counted
    if best is None and recent:
        return recent[-1]
    return best
