"""Llama 3 special tokens as text (FORMAT.md §2): the tokens, keeping them out of untrusted
text, and finding them in a prompt.

Meta's tokenizer knows 256 special tokens; each is one token and each has the form `<|name|>`.

**Neutralizing** (DESIGN decision 5). Ollama and llama.cpp parse special tokens in raw prompts, so
a tool result containing `<|eot_id|><|start_header_id|>system<|end_header_id|>` would forge a
system turn. Every special token starts with `<|`; `neutralize` inserts one U+200C ZERO WIDTH
NON-JOINER after each `<` that is followed by `|` (possibly after ZWNJs already there), so the
result never contains `<|` and no special token can match, whatever the tokenizer. The model
still reads the text (`<`, ZWNJ, `|`, ...), at the cost of one token per occurrence. Exact
inverse: text that already holds `<` + ZWNJ + `|` gets a second ZWNJ, and `unneutralize` removes
exactly one ZWNJ from every `<` + ZWNJs + `|` run, so `unneutralize(neutralize(s)) == s` for
every string. Unneutralize only for display; never put unneutralized text back in a prompt.

**Marks**, for incremental counting. `count_tokens` splits the text at special tokens and counts
each piece on its own, as llama.cpp does (no BPE merge crosses a special token). So the count of
a prompt up to the end of a special token (a *mark*) never changes when text is appended, and a
counter that remembers the counts at marks of earlier prompts only has to tokenize what follows
the last mark they share. The backend's and the emulator's counters both count that way, with
`common_prefix_length`, `special_token_spans` and `last_special_token_end`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOM = "<|eom_id|>"
"""End of message: the model stopped for a tool result and will go on after it."""
EOT = "<|eot_id|>"
"""End of turn."""
PYTHON_TAG = "<|python_tag|>"
"""Marks a tool call (built-in call or code) in assistant output."""
IMAGE = "<|image|>"

_NAMED = (
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    START_HEADER,
    END_HEADER,
    EOM,
    EOT,
    PYTHON_TAG,
    IMAGE,
)

SPECIAL_TOKENS: tuple[str, ...] = _NAMED + tuple(
    f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(_NAMED))
)
"""All 256 special tokens in id order (ids 128000-128255)."""

SPECIAL_TOKEN_RE = re.compile("|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len)[::-1]))
"""Matches any special token's text."""

STOP_TOKENS: frozenset[str] = frozenset({EOT, EOM, END_OF_TEXT})
"""The tokens at which generation stops (Meta's `Tokenizer.stop_tokens`)."""

SPECIAL_SET = frozenset(SPECIAL_TOKENS)
LONGEST_SPECIAL = max(map(len, SPECIAL_TOKENS))
SPECIAL_PREFIXES = frozenset(t[:k] for t in SPECIAL_TOKENS for k in range(1, len(t)))
"""The unfinished starts of special tokens (a chunk may end in one)."""
SPECIAL_SHAPE = re.compile(r"<\|[a-z0-9_]{1,40}\|>")
"""What every special token looks like (a match is one when it is in `SPECIAL_SET`)."""
SPECIAL_FIND = re.compile(
    r"<\|(?:reserved_special_token_\d{1,3}|"
    + "|".join(sorted(re.escape(t[2:-2]) for t in _NAMED if "reserved" not in t))
    + r")\|>"
)
"""Finds the special tokens (a match is one when it is in `SPECIAL_SET`) and nothing else that
has their shape: text full of `<|a|>` is skipped in C."""

# --- neutralizing ----------------------------------------------------------------------------

ZWNJ = "\u200c"

_ADD = re.compile("<(?=\u200c*\\|)")
_REMOVE = re.compile("<\u200c(?=\u200c*\\|)")


def neutralize(text: str) -> str:
    """Make `text` unable to contain a special token; reversible with `unneutralize`."""
    if "<" not in text or "|" not in text:
        return text
    return _ADD.sub("<" + ZWNJ, text)


def unneutralize(text: str) -> str:
    """Undo `neutralize` exactly (for display only)."""
    if ZWNJ not in text:
        return text
    return _REMOVE.sub("<", text)


# --- marks -----------------------------------------------------------------------------------


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
    for match in SPECIAL_SHAPE.finditer(text, start):
        if match.group() in SPECIAL_SET:
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
        opening = text.rfind("<|", max(end - LONGEST_SPECIAL, 0), end)
        if opening >= 0 and text[opening:end] in SPECIAL_SET:
            return end
    return None
