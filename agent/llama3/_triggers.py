"""What the scanner looks for: where a call may start, and the small patterns it steps over."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_FIXED = ("<function=", "```")


@dataclass(frozen=True)
class Triggers:
    """`regex` finds a possible call start; `prefixes` are the unfinished starts a chunk may
    end in (held back while streaming); `longest` bounds how far back to look for them."""

    regex: re.Pattern[str]
    prefixes: frozenset[str]
    longest: int


@lru_cache(maxsize=64)
def triggers(names: frozenset[str]) -> Triggers:
    """Where a call may start: brackets, tags, fences and `name.call(` for these names."""
    dotted = sorted(f"{name}.call(" for name in names)
    alternatives = "|".join(re.escape(d) for d in dotted)
    regex = re.compile(r"[{\[]|<function=|```|(?<![\w.])(?:" + alternatives + ")")
    literals = (*_FIXED, *dotted)
    prefixes = frozenset(lit[:k] for lit in literals for k in range(1, len(lit)))
    return Triggers(regex, prefixes, max(map(len, literals)))


# Tool names are short: a longer word is prose (and is not re-matched on every chunk).
BARE = re.compile(r"[ \t\r\n]*([A-Za-z_]\w{0,63})\(")
BARE_PARTIAL = re.compile(r"[ \t\r\n]*[A-Za-z_]\w{0,63}\Z")
SEPARATORS = re.compile(r"[ \t\r\n;,]*")
FENCE_INFO = re.compile(r"[ \t]*[\w+.\-]*[ \t]*")
BLANK = re.compile(r"[ \t]*")
KEY = re.compile(r"[A-Za-z_]\w{0,40}\s*(:?)")
IDENT = re.compile(r"[A-Za-z_][\w.\-]*")
# What may stand between a call and the words after it on its line (bounded: a long run of
# symbols is no sentence).
WORDS_AHEAD = re.compile(r"[^\w\n]{0,64}")
TRAILING_SEPARATORS = re.compile(r"[ \t\r\n;,]*[;,]")
CLOSE_TAG = "</function>"
SENTENCE_END = frozenset(".:!?。！？：…")


def end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern` (which may match empty) stops matching at `pos`."""
    m = pattern.match(text, pos)
    return m.end() if m is not None else pos


def is_word(ch: str) -> bool:
    """Part of a name (so `x.call(` inside `my_x.call(` is no trigger)."""
    return ch.isalnum() or ch in "_."


CLOSE_PREFIXES = frozenset(CLOSE_TAG[:k] for k in range(1, len(CLOSE_TAG)))
