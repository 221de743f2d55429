"""Token counting for Llama 3 prompts, as the server counts them.

Ollama tokenizes the whole prompt string with special-token parsing on, so `count_tokens` does
the same: each special token's text is one token, the rest goes through Llama 3's BPE.

- **Exact** when `tiktoken` and Meta's BPE ranks file (`tokenizer.model`) are both there: the
  `tokenizer` extra. The file is found in the `llama-models` wheel (looked up without importing
  it) or at the path in `LLAMA_AGENT_TOKENIZER`. Loading takes about 0.3 s, once per process.
- **Estimated** otherwise: the text is split as Llama 3's pre-tokenizer splits it (one regex,
  approximated with `re`), and each piece is priced by its length and script. Measured against
  the real tokenizer on the texts of `tests/llama3/token_corpus.py` (estimate / exact): English
  1.07-1.17, code 1.18-1.24, JSON 1.13-1.63, YAML and markdown 1.13, punctuation-heavy prose
  1.12, European languages 1.16, Hebrew 1.12, Cyrillic and Greek 1.26-1.50, Arabic 1.34, Hindi
  1.51, Chinese, Japanese and Korean 1.62-1.80. Text built to defeat it: random ASCII
  punctuation 1.13, random printable ASCII 0.92, regexes 1.08, ASCII art 1.39, random Unicode
  1.01 (BMP) to 1.17 (to U+2FFFF), random emoji 1.13. One known gap: random ideographs from
  the whole CJK block count 0.69 (rare ideographs take 2-3 tokens, common ones 1, and only the
  vocabulary tells them apart). Texts of a few tokens may come out a token or two short.
  Over-counting is the safe side for sizing `num_ctx`.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import threading
from bisect import bisect_right
from functools import cache
from pathlib import Path
from typing import Any

from agent.llama3._special import SPECIAL_TOKEN_RE, SPECIAL_TOKENS

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
