"""Sizing `num_ctx`, and noticing when Ollama saw fewer prompt tokens than were sent.

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

* **`GenerateOptions.num_ctx_max` set** (the config's `ollama.options.num_ctx`): every request
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
short run after a long one keeps the long one's size). Across processes, set `num_ctx_max`.

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

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.errors import ContextOverflowError
from agent.llama3 import common_prefix_length

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
        raise ContextOverflowError(needed=needed, available=ceiling, model=model)
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


@dataclass(frozen=True, kw_only=True)
class Remembered:
    """A text Ollama's cache may hold, and a lower bound of its tokens (BOS not included)."""

    text: str
    tokens: int


class PromptHistory:
    """The last few prompt+completion texts per model: what Ollama's cache may still hold."""

    def __init__(self, count_tokens: Callable[[str], Awaitable[int]], *, depth: int = 8) -> None:
        self._count = count_tokens
        self._depth = depth
        self._texts: dict[str, deque[Remembered]] = {}

    def remember(self, model: str, text: str, *, tokens: int) -> None:
        """Note that the server may now hold `text`; `tokens` is at most its token count."""
        texts = self._texts.setdefault(model, deque(maxlen=self._depth))
        if texts and texts[-1].text == text:
            if tokens > texts[-1].tokens:
                texts[-1] = Remembered(text=text, tokens=tokens)
            return
        texts.append(Remembered(text=text, tokens=tokens))

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
            if text.startswith(previous.text):
                if reported >= _floor(sent - min(1 + previous.tokens, sent), sent, exact=exact):
                    return None
                break
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
