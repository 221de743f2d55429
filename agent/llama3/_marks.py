"""Where special tokens end in a prompt, and how far two prompts agree: incremental counting.

`count_tokens` splits the text at special tokens and counts each piece on its own, as llama.cpp
does (no BPE merge crosses a special token). So the count of a prompt up to the end of a special
token (a *mark*) never changes when text is appended, and a counter that remembers the counts at
marks of earlier prompts only has to tokenize what follows the last mark they share. The backend
(`agent.backends._tokens`) and the emulator (`agent.testing._counting`) both count that way;
these are the pieces they share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent.llama3._special import SPECIAL_TOKENS

_SPECIAL = frozenset(SPECIAL_TOKENS)
_LONGEST_SPECIAL = max(len(token) for token in SPECIAL_TOKENS)
_CANDIDATE = re.compile(r"<\|[a-z0-9_]+\|>")  # every special token has this shape


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over C-speed slice compares)."""
    if b.startswith(a):
        return len(a)
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def special_token_spans(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) of each special token lying wholly in `text[start:]`, first to last."""
    for match in _CANDIDATE.finditer(text, start):
        if match.group() in _SPECIAL:
            yield match.start(), match.end()


def last_special_token_end(text: str, start: int = 0, *, max_back: int = 256) -> int | None:
    """The end of the last special token ending in `text[start:]`, if any.

    Only the last `max_back` `|>` marks are inspected, so text full of lookalikes stays cheap.
    """
    position = len(text)
    for _ in range(max_back):
        position = text.rfind("|>", start, position)
        if position < 0:
            return None
        end = position + 2
        # No special token contains "<|" past its start: the last one before `end` is the only
        # opening that can make `text[:end]` end with a special token.
        opening = text.rfind("<|", max(end - _LONGEST_SPECIAL, 0), end)
        if opening >= 0 and text[opening:end] in _SPECIAL:
            return end
    return None
