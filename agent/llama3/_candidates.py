"""The call-start finder: where a call may start in prose (`Triggers`), and how far a
possible call reaches (`Candidate`, `advance`), then what its text reads as (`read_span`).

The scanner (`_scan.Scanner`) walks prose with `Triggers.find`; at each hit it opens a
`Candidate` and calls `advance` as text comes, until the candidate turns out to be prose or a
span to read. Both depend on the text alone, never on how it was chunked, which is what makes
the streamed parse equal the one-shot parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from agent.llama3._calls import (
    Balance,
    Reading,
    json_end,
    read_bare,
    read_builtin,
    read_function_tag,
    read_json,
    read_python_list,
)

# --- triggers ---------------------------------------------------------------------------------
#
# What the scanner looks for: where a call may start, and the small patterns it steps over.

_FTAG = "<function="
_DOTCALL = ".call("
_FIXED = (_FTAG, "```")
HEAD_WINDOW = 200
"""How far past a bracket its head (a key, a name) is looked for."""
_CUT_OFF_HEAD = 1024
"""How much of a span cut off by the end of the text is read (its head names the call)."""


@dataclass(frozen=True)
class Triggers:
    """`regex` finds a possible call start; `prefixes` are the unfinished starts a chunk may
    end in (held back while streaming); `longest` bounds how far back to look for them.
    `find` searches prose with `regex`'s answer, faster (see there)."""

    regex: re.Pattern[str]
    quick: re.Pattern[str]
    named: re.Pattern[str]
    prefixes: frozenset[str]
    longest: int
    held: re.Pattern[str]
    """Searched from a position, finds the first one where the rest of the text is one of
    `prefixes`, a name's only after no word (what streaming must hold back)."""

    def find(self, buf: str, pos: int) -> tuple[int, str] | None:
        """The first trigger at or after `pos`: (where, what); None when there is none.

        `regex.search` would do, at a fraction of the speed: its alternatives start with a
        lookbehind, so the regex engine tries every position. Instead `quick`, whose every
        alternative starts with a literal, finds brackets, fences and `.call(` (and skips the
        brackets whose next character already says they open no call: `{(`, `[1`), and a
        `.call(` after a name; then `named` finds where the longest such name starts, in a
        window of `longest` characters, and `str.find`
        looks for `<function=` before the hit (`<` alone, in a regex, made text full of `<|`
        slow).
        """
        while True:
            m = self.quick.search(buf, pos)
            limit = m.start() if m is not None else len(buf)
            tag = buf.find(_FTAG, pos, min(len(buf), limit + len(_FTAG) - 1))
            if tag >= 0:
                return tag, _FTAG
            if m is None:
                return None
            if m.group() != _DOTCALL:
                return m.start(), m.group()
            n = self.named.search(buf, max(pos, m.start() - self.longest), m.end())
            if n is not None and n.end() == m.end():
                return n.start(), n.group()
            pos = m.start() + 1


@lru_cache(maxsize=64)
def triggers(names: frozenset[str]) -> Triggers:
    """Where a call may start: brackets, tags, fences and `name.call(` for these names."""
    dotted = sorted(f"{name}.call(" for name in names)
    alternatives = "|".join(re.escape(d) for d in dotted)
    rest = r"|<function=|```|(?<![\w.])(?:" + alternatives + ")"
    regex = re.compile(r"[{\[]" + rest)
    named = re.compile(r"(?<![\w.])(?:" + alternatives + ")")
    # What `_brace` takes: after `{` a quote or a key, after `[` a `{` or a name (past at most
    # `HEAD_WINDOW` blanks: beyond, the window holds none, and the candidate decides).
    blanks = f"[ \\t\\r\\n]{{0,{HEAD_WINDOW - 1}}}"
    # `.call(` only after one of the names (a lookbehind each: they differ in length).
    after_name = "|".join(rf"(?<=(?<![\w.]){re.escape(d)})" for d in dotted)
    quick = re.compile(
        rf"\{{(?!{blanks}[^ \t\r\n\"'A-Za-z_])|\[(?!{blanks}[^ \t\r\n{{A-Za-z_])|```|"
        + re.escape(_DOTCALL)
        + f"(?:{after_name})"
    )
    literals = (*_FIXED, *dotted)
    prefixes = frozenset(lit[:k] for lit in literals for k in range(1, len(lit)))
    held = "|".join(_prefixes_of(lit) for lit in _FIXED)
    if dotted:
        held += r"|(?<![\w.])(?:" + "|".join(_prefixes_of(d) for d in dotted) + ")"
    held_re = re.compile(rf"(?:{held})\Z")
    return Triggers(regex, quick, named, prefixes, max(map(len, literals)), held_re)


def _prefixes_of(literal: str) -> str:
    """A pattern matching the proper prefixes of `literal`: `a(?:b(?:c)?)?` for `abcd`."""
    pattern = ""
    for ch in reversed(literal[:-1]):
        pattern = re.escape(ch) + (f"(?:{pattern})?" if pattern else "")
    return pattern


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


# --- candidates -------------------------------------------------------------------------------
#
# Follow one possible call that the scanner spotted until its end is known, then read it.
#
# The scanner finds where a call may start: a bracket, `<function=`, `name.call(` or a
# bare `name(`. `advance` follows that candidate through the growing buffer and says what to do
# next: wait for more text, hand the text back to prose, or read the span (`read_span`, with the
# readers of `_calls`). It depends on the text alone, never on how it was chunked.

Kind = Literal["brace", "ftag", "builtin", "bare"]
_FTAG_NAME_END = re.compile(r"[\n<{]")


@dataclass(kw_only=True)
class Candidate:
    """A span that may be a call, followed from its first character `start`."""

    kind: Kind
    start: int
    cursor: int
    balance: Balance | None = None
    name: str = ""
    body_start: int = -1
    body_end: int = -1
    phase: str = "head"


@dataclass(frozen=True, kw_only=True)
class Prose:
    """Not a call: the text up to `end` is prose; what follows is scanned again."""

    end: int


@dataclass(frozen=True, kw_only=True)
class Span:
    """The candidate ends at `end`: read it (`complete`: it closed before the text ended)."""

    end: int
    complete: bool
    no_args: bool = False


def open_candidate(kind: Kind, at: int, cursor: int) -> Candidate:
    """A candidate starting at `at`, its text read from `cursor` on."""
    cand = Candidate(kind=kind, start=at, cursor=cursor)
    if kind in ("builtin", "bare"):
        cand.balance = Balance("(", cursor - 1)
        cand.phase = "balance"
    return cand


def advance(
    cand: Candidate, buf: str, *, final: bool, cut_off: dict[int, int]
) -> Prose | Span | None:
    """Follow `cand` through `buf`; None: wait for more text (never when `final`).

    `cut_off` maps brackets that a scan left open where it stopped (the end of the text, or a
    mismatched closer) to where that was: a scan from one of them would stop there too, in the
    same state, so it is not repeated (deeply nested unclosed text stays linear).
    """
    if cand.kind == "brace":
        return _brace(cand, buf, final=final, cut_off=cut_off)
    if cand.kind == "ftag":
        return _ftag(cand, buf, final=final)
    return _balance(cand, buf, final=final, cut_off=cut_off)


def _wait_or_prose(cand: Candidate, *, final: bool) -> Prose | None:
    return Prose(end=cand.start + 1) if final else None


def _brace(
    cand: Candidate, buf: str, *, final: bool, cut_off: dict[int, int]
) -> Prose | Span | None:
    if cand.phase == "head":
        opener = buf[cand.start]
        rest = buf[cand.cursor : cand.cursor + HEAD_WINDOW].lstrip(" \t\r\n")
        if not rest:
            return _wait_or_prose(cand, final=final)
        if opener == "{":
            # A key: quoted, or (as models sometimes write) a bare word before a colon.
            m = KEY.match(rest)
            if m is not None and m.end() == len(rest) and not m.group(1):
                return _wait_or_prose(cand, final=final)
            ok = rest[0] in "\"'" or (m is not None and bool(m.group(1)))
        elif rest[0] == "{":
            ok = True
        else:
            m = IDENT.match(rest)
            if m is not None and m.end() == len(rest):
                return _wait_or_prose(cand, final=final)
            ok = m is not None and rest[m.end()] == "("
        if not ok:
            return Prose(end=cand.start + 1)
        cand.balance = Balance(opener, cand.start)
        cand.phase = "balance"
    known = cut_off.get(cand.start)
    if known is not None:
        return Span(end=known, complete=False)
    if cand.cursor == cand.start + 1:
        end = json_end(buf, cand.start)
        if end is not None:
            return Span(end=end, complete=True)
    return _balance(cand, buf, final=final, cut_off=cut_off)


def _balance(cand: Candidate, buf: str, *, final: bool, cut_off: dict[int, int]) -> Span | None:
    assert cand.balance is not None
    end = cand.balance.feed(buf, cand.cursor)
    if end is None:
        cand.cursor = len(buf)
        if not final:
            return None
        end = len(buf)
    elif not cand.balance.failed:
        return Span(end=end, complete=True)
    cut_off.update(dict.fromkeys(cand.balance.open_at, end))
    return Span(end=end, complete=False)


def _ftag(cand: Candidate, buf: str, *, final: bool) -> Prose | Span | None:
    if cand.phase == "head":
        gt = buf.find(">", cand.cursor, cand.cursor + 100)
        bad = _FTAG_NAME_END.search(buf, cand.cursor, gt if gt >= 0 else cand.cursor + 100)
        if bad or (gt < 0 and len(buf) >= cand.cursor + 100):
            return Prose(end=cand.start + 1)
        if gt < 0:
            return _wait_or_prose(cand, final=final)
        cand.name = buf[cand.cursor : gt]
        cand.cursor = gt + 1
        cand.phase = "args"
    if cand.phase == "args":
        nxt = len(buf) - len(buf[cand.cursor :].lstrip(" \t\r\n"))
        if nxt == len(buf) or (buf[nxt:] in CLOSE_PREFIXES and not final):
            return Span(end=cand.cursor, complete=True) if final else None
        if buf.startswith(CLOSE_TAG, nxt):
            return Span(end=nxt + len(CLOSE_TAG), complete=True)
        if buf[nxt] != "{":
            return Span(end=cand.cursor, complete=True, no_args=True)
        cand.body_start = nxt
        cand.balance = Balance("{", nxt)
        cand.cursor = nxt + 1
        cand.phase = "balance"
    if cand.phase == "balance":
        assert cand.balance is not None
        end = cand.balance.feed(buf, cand.cursor)
        if end is None:
            cand.cursor = len(buf)
            if not final:
                return None
            cand.body_end = len(buf)
            return Span(end=len(buf), complete=False)
        cand.body_end = end
        cand.cursor = end
        cand.phase = "close"
    nxt = len(buf) - len(buf[cand.cursor :].lstrip(" \t"))
    if buf.startswith(CLOSE_TAG, nxt):
        return Span(end=nxt + len(CLOSE_TAG), complete=True)
    if not final and (nxt == len(buf) or buf[nxt:] in CLOSE_PREFIXES):
        return None
    return Span(end=cand.body_end, complete=True)


def read_span(
    cand: Candidate, buf: str, span: Span, allowed: frozenset[str] | None
) -> Reading | None:
    """What the candidate's text reads as; None when it is no call at all."""
    complete = span.complete
    # A span cut off by the end of the text is only ever read at its head (to name the botched
    # call): copying the rest of the text for each one made unclosed nesting quadratic.
    end = span.end if complete else min(span.end, cand.start + _CUT_OFF_HEAD)
    text = buf[cand.start : end]
    if cand.kind == "brace":
        if text[0] == "{" or text[1:].lstrip().startswith("{"):
            return read_json(text, complete=complete)
        return read_python_list(text, complete=complete)
    if cand.kind == "builtin":
        return read_builtin(text, allowed, complete=complete)
    if cand.kind == "bare":
        return read_bare(text, complete=complete)
    name = cand.name.strip()
    if span.no_args:
        why = f"the call to '{name}' has no JSON arguments after it"
        return Reading(form="function_tag", broken=why, name=name)
    body = None
    if cand.body_start >= 0:
        body = buf[cand.body_start : cand.body_end] if complete else ""
    return read_function_tag(cand.name, body, complete=complete)
