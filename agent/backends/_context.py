"""The context window: sizing `num_ctx`, counting prompt tokens, reading what a model holds.

* `size_context`: the `num_ctx` (and `num_predict`) of each request, by the policy below.
* `PromptHistory`: noticing when the server saw fewer prompt tokens than were sent.
* `TokenCounter`: counting each prompt incrementally (only what a step adds).
* `describe`, `context_length`, `family`, `check_capabilities`: a model's trained context,
  format family and capabilities, from its GGUF metadata as the server reports it.

**Sizing `num_ctx`, and noticing when Ollama saw fewer prompt tokens than were sent.**

DESIGN decision 2: Ollama truncates a prompt longer than `num_ctx` from the front, silently
(PROTOCOL.md §1.6). So every request carries a `num_ctx` that holds the prompt plus the room for
the answer, capped by the model's trained context and the caller's setting; a conversation that
does not fit is an error, never a truncation.

**The policy: few sizes, rarely changed.** Changing `num_ctx` between two requests makes Ollama
reload the model (§1.2: seconds on real hardware) and drop its KV cache, so the next request
prefills the whole conversation again instead of the few tokens it added (DESIGN decision 4).
Memory, on the other side: Ollama allocates the KV cache when it loads the model, for
`num_ctx` × `OLLAMA_NUM_PARALLEL` tokens (§3.4), whether or not a prompt uses them. With an f16
cache that is 2 × layers × KV heads × head size × 2 bytes per token: 128 KiB for Llama 3.1 8B
(1 GiB at 8192, 2 GiB at 16384, 16 GiB at the full 131072), 32 KiB for 3.2 1B, 320 KiB for 70B.
So:

* **`GenerateOptions.num_ctx` set** (the config's `ollama.options.num_ctx`): every request
  sends exactly that (capped by the model's `context_length`). One size, never a reload, the
  same value for every run and every process that uses the same setting, and the memory is
  what the user chose, as with Ollama's own `num_ctx`. A prompt that needs more is an error.
* **Not set**: the first request of a model sends the smallest power of two that holds
  `HEADROOM` (2) × what the prompt needs (the prompt plus `num_predict`, or plus the backend's
  completion reserve), and at least `MIN_NUM_CTX` (8192: 1 GiB for 8B, twice Ollama's old
  default; below that a tool-using conversation outgrows the context within a few steps). The
  size is kept per model and only grows: a prompt that no longer fits raises it to the power of
  two holding twice its need, so each reload at least doubles the room and a conversation
  reloads at most once per doubling (with the default 2,048-token reserve, a conversation
  whose prompt stays under 6,000 tokens never reloads after its first request).
  Growth stops at the model's `context_length`. Doubling wastes at most 3/4 of the cache right
  after a growth; past the 8192 floor, memory follows the longest conversation seen.

Different runs that share one model on one server must agree on `num_ctx`, or each would reload
the model for the other. Within one backend they do: the size is per model and only grows (a
short run after a long one keeps the long one's size). Across processes, set `num_ctx`.

The check afterwards compares `prompt_eval_count` with the count sent. Ollama reports only the
tokens it had to evaluate, so a prompt that shares a prefix with an earlier prompt plus its
completion (the KV cache, DESIGN decision 4) legitimately reports fewer; `PromptHistory` keeps the
recent texts per model, each with a lower bound of its token count, to tell a cache hit from a
truncation. A warm cache makes every request of a conversation report fewer tokens than were
sent, so the usual case is decided in O(1): the previous text of the conversation is a prefix
of this one (`str.startswith`), and its known count explains the report. Only when that does not
settle it is the longest common prefix with each remembered text searched and counted.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from agent._frozen import stored_at_once
from agent.backends._base import Family, ModelInfo
from agent.errors import ContextOverflowError, ModelCapabilityError
from agent.llama3 import (
    common_prefix_length,
    count_tokens,
    last_special_token_end,
    model_family,
    tokenizer_is_exact,
)

MIN_NUM_CTX = 8192  # the smallest size sent when the caller sets none
HEADROOM = 2  # a new size holds this many times what the prompt needs
MIN_COMPLETION = 256  # the least room left for an answer before a prompt counts as not fitting


def _power_of_two_at_least(value: int) -> int:
    return 1 << max(value - 1, 1).bit_length()


def size_context(
    *,
    model: str,
    prompt_tokens: int,
    num_predict: int | None,
    reserve: int,
    ceiling: int,
    current: int,
    fixed: bool = False,
) -> tuple[int, int]:
    """(`num_ctx`, `num_predict`) for a prompt of `prompt_tokens` (see the module docstring).

    `ceiling`: the most the model may get; `fixed`: send exactly `ceiling` (the caller set it);
    `current`: the size this model was last given (0: none yet). The returned `num_predict`
    never runs past the context: Ollama would otherwise shift the context during generation,
    dropping the start of the conversation.
    """
    wanted_completion = num_predict if num_predict is not None and num_predict > 0 else None
    needed = prompt_tokens + (wanted_completion or MIN_COMPLETION)
    if needed > ceiling:
        raise ContextOverflowError(
            needed=needed, available=ceiling, model=model, prompt_tokens=prompt_tokens
        )
    target = prompt_tokens + (wanted_completion or reserve)
    if fixed:
        size = ceiling
    elif current >= target:
        size = min(current, ceiling)
    else:
        grown = _power_of_two_at_least(HEADROOM * target)
        size = min(max(grown, MIN_NUM_CTX, current), ceiling)
    room = size - prompt_tokens
    return size, min(wanted_completion or room, room)


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class Remembered:
    """A text Ollama's cache may hold, and a lower bound of its tokens (BOS not included)."""

    text: str
    tokens: int


_EXTENDED_MARKS = 16  # special tokens looked back for a remembered prefix (a step adds ~6)


class PromptHistory:
    """The last few prompt+completion texts per model: what Ollama's cache may still hold."""

    def __init__(
        self,
        count_tokens: Callable[[str], Awaitable[int]],
        *,
        depth: int = 8,
        index_size: int = 4096,
    ) -> None:
        self._count = count_tokens
        self._depth = depth
        self._texts: dict[str, deque[Remembered]] = {}
        # Every recent text by (model, length, hash), no text kept: with many runs at once the
        # `depth` newest texts are other runs', and a run's own previous step, which its next
        # prompt extends, is found here instead of by the costly common-prefix search.
        self._index: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._index_size = index_size

    def remember(self, model: str, text: str, *, tokens: int) -> None:
        """Note that the server may now hold `text`; `tokens` is at most its token count."""
        key = (model, len(text), hash(text))
        self._index[key] = max(tokens, self._index.pop(key, 0))
        if len(self._index) > self._index_size:
            self._index.popitem(last=False)
        texts = self._texts.setdefault(model, deque(maxlen=self._depth))
        if texts and texts[-1].text == text:
            if tokens > texts[-1].tokens:
                texts[-1] = Remembered(text=text, tokens=tokens)
            return
        texts.append(Remembered(text=text, tokens=tokens))

    def _extended(self, model: str, text: str) -> int | None:
        """The tokens of a remembered text that `text` extends at one of its last special
        tokens (where a completion ends and the next message starts), or None."""
        position = len(text)
        for _ in range(_EXTENDED_MARKS):
            position = text.rfind("<|", 0, position)
            if position <= 0:
                return None
            tokens = self._index.get((model, position, hash(text[:position])))
            if tokens is not None:
                return tokens
        return None

    def snapshot(self, model: str) -> tuple[Remembered, ...]:
        """The texts remembered so far (taken when a request starts, before it is remembered)."""
        return tuple(self._texts.get(model, ()))

    async def cacheable_tokens(
        self, history: tuple[Remembered, ...], text: str, *, sent: int | None = None
    ) -> int:
        """How many leading tokens of `text` (BOS included) Ollama may already have cached.

        `sent`: the tokens of `text` with the BOS, if known (then a text held whole is not
        counted again).
        """
        if not history:
            return 0
        best = max(common_prefix_length(previous.text, text) for previous in history)
        if sent is not None and best >= len(text):
            return sent
        return 1 + await self._count(text[:best])

    async def shortfall_warning(
        self,
        *,
        model: str,
        history: tuple[Remembered, ...],
        text: str,
        sent: int,
        reported: int,
        num_ctx: int,
        exact: bool,
    ) -> str | None:
        """A warning when `reported` is too low to be explained by the cache, else None."""
        if reported >= sent:
            return None
        # The usual case: the newest text that starts this one is the conversation's previous
        # step, and its count alone explains the report. A lower bound of what is cached gives
        # an upper bound of what had to be evaluated, so passing here means passing below.
        for previous in reversed(history):
            if previous.text.startswith(text):
                return None  # sent whole before (a shared opening prompt): all may be cached
            if text.startswith(previous.text):
                if reported >= _floor(sent - min(1 + previous.tokens, sent), sent, exact=exact):
                    return None
                break
        else:
            known = self._extended(model, text)
            if known is not None and reported >= _floor(
                sent - min(1 + known, sent), sent, exact=exact
            ):
                return None
        cached = min(await self.cacheable_tokens(history, text, sent=sent), sent)
        if reported >= _floor(sent - cached, sent, exact=exact):
            return None
        return (
            f"Ollama evaluated {reported} prompt tokens of the {sent} sent to {model} "
            f"(at most {cached} could come from its cache, num_ctx={num_ctx}): it probably "
            "truncated the prompt. Check that nothing overrides num_ctx (OLLAMA_CONTEXT_LENGTH, "
            "a Modelfile) and that the server's tokenizer matches."
        )


def _floor(evaluated: int, sent: int, *, exact: bool) -> int:
    """The fewest evaluated tokens a server may report without having truncated the prompt."""
    # An estimated count can be a third too high; only a large gap then means truncation.
    return evaluated - 4 - sent // 100 if exact else evaluated // 2 - 4


# --- counting tokens ------------------------------------------------------------------------------

_WINDOW = 256  # characters before a cut that key it (cheap to hash, distinct per conversation)
_SMALL = 32  # pieces this short have their counts remembered (`_SMALL_KEPT` of them at most)
_SMALL_KEPT = 1024


@stored_at_once
@dataclass(frozen=True, kw_only=True)
class _Cut:
    digest: int  # hash of the whole prefix up to the cut
    tokens: int  # its token count


class TokenCounter:
    """Counts Llama 3 tokens like `count_tokens`, reusing the counts of earlier prompts.

    The backend counts every prompt it sends (to size `num_ctx`, DESIGN decision 2), and the
    prompts of one conversation extend each other. Counting a 100k-token prompt takes 50-250 ms
    of CPU, and a conversation sends a slightly longer prompt at every step, so counting each
    prompt whole would cost each step more than the step before and stall every other run on the
    event loop. So only what is new is counted:

    * After counting a long prompt it remembers the count up to the end of the prompt's last
      special token (the *cut*, usually the `<|end_header_id|>` of the assistant header), in a
      bounded LRU keyed by the cut's position and a hash of the text just before it, with a hash of
      the whole prefix to confirm a match. No text is kept.
    * A new prompt is looked up at each special-token end, from its end backwards (the previous
      step's cut is a few special tokens back); on a match only the text after the cut is counted.
    * What is still to count is counted in a worker thread when it is long (tiktoken releases the
      GIL), so a first count of a long prompt does not stall the event loop either; so is the
      very first count, which loads the tokenizer.

    Why joining counts is exact (`agent.llama3._special`): `count_tokens` splits the text at special
    tokens and counts each piece on its own, as llama.cpp does (a special token is a hard boundary
    for BPE: no merge crosses it). So when the prefix ends with a special token, count(prefix +
    rest) == count(prefix) + count(rest) with the exact tokenizer. The estimate used without the
    `tokenizer` extra adds 10 % and rounds down once at the end, so a sum of pieces can be one token
    short of the whole: then the counter adds 1 per join, staying on the safe (over-counting) side.

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
        min_chars: int = 512,
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
        self._small: dict[str, int] = {}  # counts of short pieces
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
            if cut != start:  # else the look-up found this very cut (and kept it fresh)
                self._remember(text, cut, total)
            total += counts[1] + margin
        return total

    def _count_all(self, pieces: list[str]) -> list[int]:
        return [self._count_small(p) if len(p) <= _SMALL else self._count(p) for p in pieces]

    def _count_small(self, piece: str) -> int:
        # What follows a cut is mostly the same few characters (the "\n\n" after a header):
        # remembered, they cost no call into the tokenizer, whose fixed cost is most of theirs.
        tokens = self._small.get(piece)
        if tokens is None:
            tokens = self._count(piece)
            if len(self._small) >= _SMALL_KEPT:
                self._small.clear()
            self._small[piece] = tokens
        return tokens

    def _lookup(self, text: str) -> tuple[int, int]:
        """(cut, tokens before it) of the longest remembered prefix of `text`, else (0, 0).

        The `|>` marks are visited from the end, at most `max_back`, and the first remembered
        one ends the search: the previous step's cut is usually a few marks back.
        """
        start = self._min_chars - 2
        position = len(text)
        for _ in range(self._max_back):
            position = text.rfind("|>", start, position)
            if position < 0:
                break
            end = position + 2
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


# --- model info -----------------------------------------------------------------------------------

_LLAMA3_RE = re.compile(r"llama[-_ ]?3(?:[._-]?[0-9])?(?![0-9])", re.IGNORECASE)


def describe(
    model: str,
    *,
    model_info: Mapping[str, Any],
    capabilities: tuple[str, ...],
    server_version: str,
) -> ModelInfo:
    """A `ModelInfo` from the fields of `/api/show`."""
    return ModelInfo(
        name=model,
        context_length=context_length(model_info),
        family=family(model, model_info),
        capabilities=capabilities,
        server_version=server_version,
    )


def context_length(model_info: Mapping[str, Any]) -> int:
    """The trained context from GGUF metadata (`<architecture>.context_length`), else 2048."""
    architecture = model_info.get("general.architecture")
    value = model_info.get(f"{architecture}.context_length")
    if not isinstance(value, int):
        value = next(
            (
                v
                for k, v in model_info.items()
                if k.endswith(".context_length") and isinstance(v, int)
            ),
            None,
        )
    return value if isinstance(value, int) and value > 0 else 2048


def family(model: str, model_info: Mapping[str, Any]) -> Family:
    """The Llama 3.x format family, from the GGUF's name or the model's; "unknown" if neither.

    `agent.llama3.model_family` decides between 3.1, 3.2 and 3.3 (3.2 vision uses 3.1's).
    """
    for text in (model_info.get("general.basename"), model_info.get("general.name"), model):
        if isinstance(text, str) and _LLAMA3_RE.search(text):
            return model_family(text)
    return "unknown"


def check_capabilities(info: ModelInfo, *, tools: bool) -> None:
    """Raise `ModelCapabilityError` when the reported capabilities rule the model out."""
    if not info.capabilities:
        return
    if "completion" not in info.capabilities:
        raise ModelCapabilityError(
            f"model '{info.name}' cannot generate text (capabilities: "
            f"{', '.join(info.capabilities)}). Use a chat model such as llama3.1."
        )
    if tools and not info.supports_tools:
        raise ModelCapabilityError(
            f"model '{info.name}' does not support tools according to Ollama (its template has "
            "no tool support). Use llama3.1, llama3.2 or llama3.3 from the Ollama library "
            "(`ollama pull llama3.1`)."
        )
