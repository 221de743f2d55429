"""Follow one possible call that the scanner spotted until its end is known, then read it.

The scanner (`_scan`) finds where a call may start: a bracket, `<function=`, `name.call(` or a
bare `name(`. `advance` follows that candidate through the growing buffer and says what to do
next: wait for more text, hand the text back to prose, or read the span (`read_span`, with the
readers of `_calls` and `_pylist`). It depends on the text alone, never on how it was chunked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.llama3._calls import Reading, read_bare, read_builtin, read_function_tag, read_json
from agent.llama3._literal import Balance, json_end
from agent.llama3._pylist import read_python_list
from agent.llama3._triggers import CLOSE_PREFIXES, CLOSE_TAG, IDENT, KEY

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
    cand: Candidate, buf: str, *, final: bool, open_at_end: set[int]
) -> Prose | Span | None:
    """Follow `cand` through `buf`; None: wait for more text (never when `final`).

    `open_at_end` holds brackets a scan already left open at the end of the text: a scan from
    one of them would too, so it is not repeated (deeply nested unclosed text stays linear).
    """
    if cand.kind == "brace":
        return _brace(cand, buf, final=final, open_at_end=open_at_end)
    if cand.kind == "ftag":
        return _ftag(cand, buf, final=final)
    return _balance(cand, buf, final=final, open_at_end=open_at_end)


def _wait_or_prose(cand: Candidate, *, final: bool) -> Prose | None:
    return Prose(end=cand.start + 1) if final else None


def _brace(cand: Candidate, buf: str, *, final: bool, open_at_end: set[int]) -> Prose | Span | None:
    if cand.phase == "head":
        opener = buf[cand.start]
        rest = buf[cand.cursor : cand.cursor + 200].lstrip(" \t\r\n")
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
    if cand.start in open_at_end:
        return Span(end=len(buf), complete=False)
    if cand.cursor == cand.start + 1:
        end = json_end(buf, cand.start)
        if end is not None:
            return Span(end=end, complete=True)
    return _balance(cand, buf, final=final, open_at_end=open_at_end)


def _balance(cand: Candidate, buf: str, *, final: bool, open_at_end: set[int]) -> Span | None:
    assert cand.balance is not None
    end = cand.balance.feed(buf, cand.cursor)
    if end is None:
        cand.cursor = len(buf)
        if not final:
            return None
        open_at_end.update(cand.balance.open_at)
        return Span(end=len(buf), complete=False)
    return Span(end=end, complete=not cand.balance.failed)


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
    text = buf[cand.start : span.end]
    complete = span.complete
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
    body = buf[cand.body_start : cand.body_end] if cand.body_start >= 0 else None
    return read_function_tag(cand.name, body, complete=complete)
