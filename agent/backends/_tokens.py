"""Counting prompt tokens incrementally: the prompts of one conversation extend each other.

The backend counts every prompt it sends (to size `num_ctx`, DESIGN decision 2). Counting a
100k-token prompt takes 50-250 ms of CPU, and a conversation sends a slightly longer prompt at
every step, so counting each prompt whole would cost each step more than the step before and
stall every other run on the event loop. `TokenCounter` counts only what is new:

* After counting a long prompt it remembers the count up to the end of the prompt's last
  special token (the *cut*, usually the `<|end_header_id|>` of the assistant header), in a
  bounded LRU keyed by the cut's position and a hash of the text just before it, with a hash of
  the whole prefix to confirm a match. No text is kept.
* A new prompt is looked up at each special-token end, from its end backwards (the previous
  step's cut is a few special tokens back); on a match only the text after the cut is counted.
* What is still to count is counted in a worker thread when it is long (tiktoken releases the
  GIL), so a first count of a long prompt does not stall the event loop either; so is the
  very first count, which loads the tokenizer.

Why joining counts is exact (`agent.llama3._marks`): `count_tokens` splits the text at special
tokens and counts each piece on its own, as llama.cpp does (a special token is a hard boundary
for BPE: no merge crosses it). So when the prefix ends with a special token, count(prefix +
rest) == count(prefix) + count(rest) with the exact tokenizer. The estimate used without the
`tokenizer` extra adds 10 % and rounds down once at the end, so a sum of pieces can be one token
short of the whole: then the counter adds 1 per join, staying on the safe (over-counting) side.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from agent.llama3 import count_tokens, last_special_token_end, tokenizer_is_exact

_WINDOW = 256  # characters before a cut that key it (cheap to hash, distinct per conversation)


@dataclass(frozen=True, kw_only=True)
class _Cut:
    digest: int  # hash of the whole prefix up to the cut
    tokens: int  # its token count


class TokenCounter:
    """Counts Llama 3 tokens like `count_tokens`, reusing the counts of earlier prompts.

    `capacity`: how many cuts are remembered (least recently used go first; about 100 bytes
    each). `min_chars`: shorter texts are counted directly (cheaper than a lookup) and not
    remembered. `thread_chars`: text still to count beyond this many characters is counted in
    a worker thread. `max_back`: how many `|>` marks a lookup inspects, from the end.
    """

    def __init__(
        self,
        count: Callable[[str], int] = count_tokens,
        *,
        exact: Callable[[], bool] = tokenizer_is_exact,
        capacity: int = 1024,
        min_chars: int = 2048,
        thread_chars: int = 20_000,
        max_back: int = 256,
    ) -> None:
        self._count = count
        self._exact = exact
        self._capacity = capacity
        self._min_chars = max(min_chars, _WINDOW + 2)
        self._thread_chars = thread_chars
        self._max_back = max_back
        self._cuts: OrderedDict[tuple[int, int], _Cut] = OrderedDict()
        self._lengths: dict[int, int] = {}  # cut position -> how many cuts end there
        self._lock = threading.Lock()  # one backend may serve event loops in several threads
        self._warm = False
        self.hits = 0
        self.misses = 0
        self.counted_chars = 0  # characters actually tokenized, for tests and benchmarks

    @property
    def warm(self) -> bool:
        """Whether a count has run (and so loaded the tokenizer)."""
        return self._warm

    async def warm_up(self, *, limiter: anyio.CapacityLimiter | None = None) -> None:
        """Load the tokenizer in a worker thread, if no count has loaded it yet."""
        if not self._warm:
            await anyio.to_thread.run_sync(self._count, "warm up", limiter=limiter)
            self._warm = True

    async def count(self, text: str, *, limiter: anyio.CapacityLimiter | None = None) -> int:
        """Tokens in `text` (special-token text counted as one token each, no BOS added)."""
        if len(text) < self._min_chars:
            self.counted_chars += len(text)
            if self._warm:
                return self._count(text)
            start, known, cut, pieces = 0, 0, None, [text]
        else:
            start, known = self._lookup(text)
            cut = last_special_token_end(
                text, max(start, self._min_chars - 2), max_back=self._max_back
            )
            pieces = [text[start:cut], text[cut:]] if cut is not None else [text[start:]]
            self.counted_chars += sum(len(piece) for piece in pieces)
        if not self._warm or sum(len(piece) for piece in pieces) > self._thread_chars:
            # The first count also loads the tokenizer (about 0.3 s): off the event loop too.
            counts = await anyio.to_thread.run_sync(self._count_all, pieces, limiter=limiter)
            self._warm = True
        else:
            counts = self._count_all(pieces)
        margin = 0 if self._exact() else 1  # see the module docstring
        total = known + counts[0] + (margin if start else 0)
        if cut is not None:
            self._remember(text, cut, total)
            total += counts[1] + margin
        return total

    def _count_all(self, pieces: list[str]) -> list[int]:
        return [self._count(piece) for piece in pieces]

    def _marks(self, text: str, start: int) -> list[int]:
        """Positions just after a `|>` in `text[start:]`, last first, at most `max_back`."""
        ends: list[int] = []
        position = len(text)
        while len(ends) < self._max_back:
            position = text.rfind("|>", start, position)
            if position < 0:
                break
            ends.append(position + 2)
        return ends

    def _lookup(self, text: str) -> tuple[int, int]:
        """(cut, tokens before it) of the longest remembered prefix of `text`, else (0, 0)."""
        for end in self._marks(text, self._min_chars - 2):
            if end not in self._lengths:
                continue
            key = (end, hash(text[end - _WINDOW : end]))
            with self._lock:
                cut = self._cuts.get(key)
            if cut is not None and hash(text[:end]) == cut.digest:
                with self._lock:
                    if key in self._cuts:
                        self._cuts.move_to_end(key)
                self.hits += 1
                return end, cut.tokens
        self.misses += 1
        return 0, 0

    def _remember(self, text: str, cut: int, tokens: int) -> None:
        key = (cut, hash(text[cut - _WINDOW : cut]))
        entry = _Cut(digest=hash(text[:cut]), tokens=tokens)
        with self._lock:
            if key not in self._cuts:
                self._lengths[cut] = self._lengths.get(cut, 0) + 1
            self._cuts[key] = entry
            self._cuts.move_to_end(key)
            while len(self._cuts) > self._capacity:
                (old, _), _ = self._cuts.popitem(last=False)
                left = self._lengths[old] - 1
                if left:
                    self._lengths[old] = left
                else:
                    del self._lengths[old]
