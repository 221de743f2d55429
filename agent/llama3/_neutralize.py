"""Neutralize special-token text in untrusted strings (DESIGN decision 5).

Ollama and llama.cpp parse special tokens in raw prompts, so a tool result containing
`<|eot_id|><|start_header_id|>system<|end_header_id|>` would forge a system turn. Every Llama 3
special token starts with `<|`; `neutralize` inserts one U+200C ZERO WIDTH NON-JOINER after each
`<` that is followed by `|` (possibly after ZWNJs already there), so the result never contains
`<|` and no special token can match, whatever the tokenizer. The model still reads the text
(`<`, ZWNJ, `|`, ...), at the cost of one token per occurrence.

Exact inverse: text that already holds `<` + ZWNJ + `|` gets a second ZWNJ, and `unneutralize`
removes exactly one ZWNJ from every `<` + ZWNJs + `|` run, so `unneutralize(neutralize(s)) == s`
for every string. Unneutralize only for display; never put unneutralized text back in a prompt.
"""

from __future__ import annotations

import re

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
