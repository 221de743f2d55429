"""Sizing `num_ctx`, and noticing when Ollama saw fewer prompt tokens than were sent.

DESIGN decision 2: Ollama truncates a prompt longer than `num_ctx` from the front, silently
(PROTOCOL.md §1.6). So every request carries a `num_ctx` that holds the prompt plus the room for
the answer, capped by the model's trained context and the caller's ceiling; a conversation that
does not fit is an error, never a truncation. `num_ctx` only grows per model, in powers of two,
because changing it makes Ollama reload the model (§1.2).

The check afterwards compares `prompt_eval_count` with the count sent. Ollama reports only the
tokens it had to evaluate, so a prompt that shares a prefix with an earlier prompt plus its
completion (the KV cache, DESIGN decision 4) legitimately reports fewer; `PromptHistory` keeps the
recent texts per model to tell a cache hit from a truncation. It counts through the backend's
`TokenCounter`, which already holds the count of the prompt's prefix, so this second count of a
step only tokenizes the few characters after that prefix.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from agent.errors import ContextOverflowError

MIN_NUM_CTX = 4096  # Ollama's own default since 0.6.7; smaller buys nothing
MIN_COMPLETION = 256  # the least room left for an answer before a prompt counts as not fitting


def size_context(
    *,
    model: str,
    prompt_tokens: int,
    num_predict: int | None,
    reserve: int,
    ceiling: int,
    current: int,
) -> tuple[int, int]:
    """(`num_ctx`, `num_predict`) for a prompt of `prompt_tokens`.

    The returned `num_predict` never runs past the context: Ollama would otherwise shift the
    context during generation, dropping the start of the conversation.
    """
    wanted_completion = num_predict if num_predict is not None and num_predict > 0 else None
    needed = prompt_tokens + (wanted_completion or MIN_COMPLETION)
    if needed > ceiling:
        raise ContextOverflowError(needed=needed, available=ceiling, model=model)
    target = prompt_tokens + (wanted_completion or reserve)
    size = max(current, min(MIN_NUM_CTX, ceiling))
    while size < target and size < ceiling:
        size *= 2
    size = min(size, ceiling)
    room = size - prompt_tokens
    return size, min(wanted_completion or room, room)


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over C-speed slice compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class PromptHistory:
    """The last few prompt+completion texts per model: what Ollama's cache may still hold."""

    def __init__(self, count_tokens: Callable[[str], Awaitable[int]], *, depth: int = 8) -> None:
        self._count = count_tokens
        self._depth = depth
        self._texts: dict[str, deque[str]] = {}

    def remember(self, model: str, text: str) -> None:
        texts = self._texts.setdefault(model, deque(maxlen=self._depth))
        if not texts or texts[-1] != text:
            texts.append(text)

    def snapshot(self, model: str) -> tuple[str, ...]:
        """The texts remembered so far (taken when a request starts, before it is remembered)."""
        return tuple(self._texts.get(model, ()))

    async def cacheable_tokens(self, history: tuple[str, ...], text: str) -> int:
        """How many leading tokens of `text` (BOS included) Ollama may already have cached."""
        if not history:
            return 0
        best = max(common_prefix_length(previous, text) for previous in history)
        return 1 + await self._count(text[:best])

    async def shortfall_warning(
        self,
        *,
        model: str,
        history: tuple[str, ...],
        text: str,
        sent: int,
        reported: int,
        num_ctx: int,
        exact: bool,
    ) -> str | None:
        """A warning when `reported` is too low to be explained by the cache, else None."""
        if reported >= sent:
            return None
        cached = min(await self.cacheable_tokens(history, text), sent)
        evaluated = sent - cached
        # An estimated count can be a third too high; only a large gap then means truncation.
        floor = evaluated - 4 - sent // 100 if exact else evaluated // 2 - 4
        if reported >= floor:
            return None
        return (
            f"Ollama evaluated {reported} prompt tokens of the {sent} sent to {model} "
            f"(at most {cached} could come from its cache, num_ctx={num_ctx}): it probably "
            "truncated the prompt. Check that nothing overrides num_ctx (OLLAMA_CONTEXT_LENGTH, "
            "a Modelfile) and that the server's tokenizer matches."
        )
