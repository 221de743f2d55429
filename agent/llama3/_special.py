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

import base64
import importlib.util
import os
import re
import threading
from bisect import bisect_right
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

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


# Meta's Tokenizer.pat_str (llama-models 0.3.0), for the exact path.
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ENV_VAR = "LLAMA_AGENT_TOKENIZER"

# tiktoken can panic on very long runs without whitespace (tiktoken issue 195), so long text is
# cut into runs of at most this many characters, as Meta's Tokenizer does.
_MAX_RUN = 25_000
_RUNS = re.compile(r"\s+|\S+")

_lock = threading.Lock()


def _ranks_path() -> Path | None:
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    try:
        spec = importlib.util.find_spec("llama_models")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or ()) if spec else ():
        path = Path(location) / "llama3" / "tokenizer.model"
        if path.is_file():
            return path
    return None


@cache
def _encoding() -> Any:
    """The tiktoken encoding of Llama 3, or None without the `tokenizer` extra."""
    with _lock:
        try:
            import tiktoken
        except ImportError:
            return None
        path = _ranks_path()
        if path is None:
            return None
        ranks: dict[bytes, int] = {}
        for line in path.read_bytes().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        special = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        return tiktoken.Encoding(
            name="llama3", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=special
        )


def tokenizer_is_exact() -> bool:
    """True when `count_tokens` uses the real Llama 3 tokenizer (the `tokenizer` extra)."""
    return _encoding() is not None


def count_tokens(text: str) -> int:
    """The number of Llama 3 tokens in `text`, special-token text counted as special tokens.

    Exact with the `tokenizer` extra (see `tokenizer_is_exact`), otherwise a documented
    estimate that over-counts ordinary text.
    """
    encoding = _encoding()
    total = 0
    for index, part in enumerate(SPECIAL_TOKEN_RE.split(text)):
        if index:
            total += 1
        if part:
            total += _exact(encoding, part) if encoding is not None else _estimate(part)
    if encoding is None:
        total += total // 10
    return total


def encode(text: str) -> list[int]:
    """Llama 3 token ids of `text` as the server sees it; needs the `tokenizer` extra."""
    encoding = _encoding()
    if encoding is None:
        raise RuntimeError(
            "exact Llama 3 tokens need the tokenizer extra: pip install 'llama-agent[tokenizer]'"
        )
    ids: list[int] = []
    for chunk in _chunks(text):
        ids.extend(encoding.encode(chunk, allowed_special="all"))
    return ids


def _exact(encoding: Any, text: str) -> int:
    return sum(len(encoding.encode_ordinary(chunk)) for chunk in _chunks(text))


def _chunks(text: str) -> list[str]:
    if len(text) <= _MAX_RUN:
        return [text]
    chunks: list[str] = []
    current = ""
    for m in _RUNS.finditer(text):
        run = m.group()
        while len(run) > _MAX_RUN:
            chunks.append(current + run[:_MAX_RUN])
            current, run = "", run[_MAX_RUN:]
        if len(current) + len(run) > _MAX_RUN:
            chunks.append(current)
            current = ""
        current += run
    if current:
        chunks.append(current)
    return chunks


# --- the estimate -------------------------------------------------------------------------------

# Llama 3's pre-tokenizer with `re` classes: letters are [^\W\d_], numbers \d.
_PIECE = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}|"
    r" ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_UPPER_INSIDE = re.compile(r"(?<=[A-Za-z])[A-Z]")

# Tokens per non-ASCII character. Byte fallback bounds any character at one token per UTF-8
# byte, about what rare characters (private use, rare scripts, most symbols) cost: cost 0.0
# below means that. The scripts people write in are cheaper: their common characters are single
# tokens and their words merge. (first code point, cost) pairs; a range runs up to the next.
_COSTS = (
    (0x80, 1.0),  # Latin-1 symbols: ° « » NBSP
    (0xC0, 0.5),  # Latin letters with accents
    (0x180, 0.0),  # rare Latin, IPA, combining marks: bytes
    (0x370, 0.4),  # Greek
    (0x400, 0.35),  # Cyrillic (basic)
    (0x460, 0.0),
    (0x5D0, 1.0),  # Hebrew letters
    (0x5F0, 0.0),
    (0x600, 0.4),  # Arabic
    (0x700, 0.0),
    (0x900, 0.6),  # Devanagari
    (0x980, 0.0),
    (0xE00, 1.0),  # Thai
    (0xE80, 0.0),
    (0x2000, 1.0),  # general punctuation: dashes, quotes, ellipsis
    (0x2070, 0.0),
    (0x2500, 1.0),  # box drawing and blocks
    (0x25A0, 0.0),
    (0x3000, 1.0),  # CJK punctuation, kana
    (0x3100, 0.0),
    (0x4E00, 1.2),  # CJK ideographs
    (0xA000, 0.0),
    (0xAC00, 1.2),  # Hangul syllables
    (0xD7B0, 0.0),
    (0xFF00, 1.0),  # full-width forms
    (0xFFF0, 0.0),
    (0x1F300, 3.0),  # emoji (4 bytes, but most are 2-3 tokens)
    (0x1FB00, 0.0),
)
_STARTS = [start for start, _ in _COSTS]
_CACHE_LIMIT = 1 << 16


class _CharCosts(dict[str, float]):
    """Cost per non-ASCII character, computed once per character seen."""

    def __missing__(self, ch: str) -> float:
        code = ord(ch)
        # ASCII inside a non-ASCII piece is priced by the piece.
        cost = _COSTS[bisect_right(_STARTS, code) - 1][1] if code >= 0x80 else 0.0
        if not cost and code >= 0x80:
            # One token per byte; a lone surrogate (tiktoken reads it as U+FFFD) counts 3.
            cost = float(len(ch.encode("utf-8", "surrogatepass")))
        if len(self) < _CACHE_LIMIT:
            self[ch] = cost
        return cost


_char_cost = _CharCosts()


def _estimate(text: str) -> int:
    # One regex pass; most pieces cost one token and are told apart by C-level string tests
    # (a word of at most 9 letters in one case or capitalised, a run of spaces or digits), so
    # only the rest pays for `_piece`. Same result as summing `_piece` over every piece.
    pieces = _PIECE.findall(text)
    total = len(pieces)
    if text.isascii():
        for piece in pieces:
            if len(piece) > 9 or not (
                piece.islower() or piece.istitle() or piece.isspace() or piece.isdigit()
            ):
                total += _piece(piece) - 1
    else:
        for piece in pieces:
            if (
                len(piece) > 9
                or not piece.isascii()
                or not (piece.islower() or piece.istitle() or piece.isspace() or piece.isdigit())
            ):
                total += _piece(piece) - 1
    return total


def _piece(piece: str) -> int:
    if piece.isascii():
        last = piece[-1]
        size = len(piece)
        if last.isalpha():
            # Words up to 9 letters are usually one token; longer runs split every few
            # letters (every other one when they are random), mixed case more.
            base = 1 if size <= 9 else 1 + (size - 6) // 3 + max(0, size - 12) // 6
            inner = len(_UPPER_INSIDE.findall(piece))
            return max(base, 1 + inner + (size - inner) // 5) if inner else base
        if piece.isspace() or last.isdigit():
            return 1
        # Punctuation: pairs common in code merge (`("`, `},`), other runs barely do.
        marks = len(piece.strip())
        return 1 + 2 * (marks - 1) // 3
    wide = sum(map(_char_cost.__getitem__, piece))
    ascii_count = sum(1 for ch in piece if ch.isascii())
    return 1 + int(wide) + ascii_count // 3
