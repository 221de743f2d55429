"""Llama 3 special tokens, as text (FORMAT.md §2).

Meta's tokenizer knows 256 special tokens; each is one token and each has the form `<|name|>`.
"""

from __future__ import annotations

import re

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

__all__ = [
    "BEGIN_OF_TEXT",
    "END_HEADER",
    "END_OF_TEXT",
    "EOM",
    "EOT",
    "IMAGE",
    "PYTHON_TAG",
    "SPECIAL_TOKENS",
    "SPECIAL_TOKEN_RE",
    "START_HEADER",
    "STOP_TOKENS",
]
