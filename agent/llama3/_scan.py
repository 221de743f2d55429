"""The incremental scanner behind `parse_completion` and `StreamParser` (text without special
tokens: the caller splits those off).

It walks the text once, left to right. Prose is committed as soon as nothing later can change
it; at a possible call (`{`, `[`, `<function=`, `brave_search.call(`, a fence, or `name(` at the
very start) it waits until the span closes and reads it (`_calls`). Adjacent calls, separated by
whitespace, `;`, `,` or a fence, form a block. A block is a mention, not a call, when prose
stands on its line both before and after it (`Write brave_search.call(query="x") to search`).
A block of bare `name(...)` calls counts only when it is the whole text.

Every decision depends on the text alone, never on how it was split into chunks, so the
streaming parser and the one-shot parser agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from agent.llama3._calls import (
    CALL_NAMES,
    NAME_RE,
    Reading,
    read_bare,
    read_builtin,
    read_function_tag,
    read_json,
    read_python_list,
)
from agent.llama3._literal import Balance
from agent.llama3._outcome import Block, Found, Outcome, decide_block

_FIXED = ("<function=", "```")


@dataclass(frozen=True)
class _Triggers:
    regex: re.Pattern[str]
    prefixes: frozenset[str]
    longest: int


@lru_cache(maxsize=64)
def _triggers(names: frozenset[str]) -> _Triggers:
    """Where a call may start: brackets, tags, fences and `name.call(` for these names."""
    dotted = sorted(f"{name}.call(" for name in names)
    alternatives = "|".join(re.escape(d) for d in dotted)
    regex = re.compile(r"[{\[]|<function=|```|(?<![\w.])(?:" + alternatives + ")")
    literals = (*_FIXED, *dotted)
    prefixes = frozenset(lit[:k] for lit in literals for k in range(1, len(lit)))
    return _Triggers(regex, prefixes, max(map(len, literals)))


# Tool names are short: a longer word is prose (and is not re-matched on every chunk).
_BARE = re.compile(r"[ \t\r\n]*([A-Za-z_]\w{0,63})\(")
_BARE_PARTIAL = re.compile(r"[ \t\r\n]*[A-Za-z_]\w{0,63}\Z")
_SEPARATORS = re.compile(r"[ \t\r\n;,]*")
_FENCE_INFO = re.compile(r"[ \t]*[\w+.\-]*[ \t]*")
_BLANK = re.compile(r"[ \t]*")
_KEY = re.compile(r"[A-Za-z_]\w{0,40}\s*(:?)")
_IDENT = re.compile(r"[A-Za-z_][\w.]*")
_TRAILING_SEPARATORS = re.compile(r"[ \t\r\n;,]*[;,]")
_CLOSE_TAG = "</function>"

Kind = Literal["brace", "ftag", "builtin", "bare"]


@dataclass(kw_only=True)
class _Cand:
    kind: Kind
    start: int
    cursor: int
    balance: Balance | None = None
    name: str = ""
    body_start: int = -1
    body_end: int = -1
    phase: str = "head"


class Scanner:
    """Incremental scanner for one segment of text (special tokens already removed).

    Untagged, prose and decided blocks go to `outcome` in text order (its `content` only ever
    grows at the end, which is what streaming shows). `tagged`: the segment follows
    `<|python_tag|>`, so mentions are impossible and the caller decides about the blocks, which
    `records` keeps with the prose around them.
    """

    def __init__(self, *, allowed: frozenset[str] | None, tagged: bool = False) -> None:
        self.tagged = tagged
        self.allowed = allowed
        dotted = CALL_NAMES | {n for n in allowed or () if NAME_RE.fullmatch(n)}
        self._t = _triggers(frozenset(dotted))
        self.records: list[str | Block] = []
        self.outcome = Outcome()
        self._buf = ""
        self._pos = 0
        self._final = False
        self._state = "prose"
        self._cand: _Cand | None = None
        self._block: Block | None = None
        self._fence = -1
        self._cursor = 0
        self._newline = False
        self._line_text = False
        self._fresh = True
        # Brackets a scan left open at the end of the text: a scan from one of them would
        # also reach the end open, so it is not repeated (deep unclosed nesting stays linear).
        self._open_at_end: set[int] = set()

    # --- input ------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Add text and scan as far as is decidable."""
        if self._final:
            return
        if self._pos > 4096 and self._state == "prose":
            self._buf = self._buf[self._pos :]
            self._pos = 0
        self._buf += text
        self._run()

    def finish(self) -> None:
        """The segment is complete: decide everything that is left."""
        if not self._final:
            self._final = True
            self._run()

    # --- output -----------------------------------------------------------------------------

    def _commit(self, end: int) -> None:
        text = self._buf[self._pos : end]
        self._pos = end
        if not text:
            return
        if self.tagged:
            self.records.append(text)
        else:
            self.outcome.content.append(text)
        newline = text.rfind("\n")
        if newline >= 0:
            self._line_text = bool(text[newline + 1 :].strip())
        elif not text.isspace():
            self._line_text = True
        if not text.isspace():
            self._fresh = False

    # --- the state machine ------------------------------------------------------------------

    def _run(self) -> None:
        step = {
            "prose": self._step_prose,
            "fence": self._step_fence,
            "cand": self._step_cand,
            "after": self._step_after,
        }
        while step[self._state]():
            pass

    def _step_prose(self) -> bool:
        buf, pos = self._buf, self._pos
        if self._fresh and self._block is None:
            m = _BARE.match(buf, pos)
            if m:
                self._commit(m.start(1))
                return self._start(m.start(1), "bare", m.end())
            if not self._final and _BARE_PARTIAL.match(buf, pos):
                return False
        m = self._t.regex.search(buf, pos)
        if m is None:
            end = len(buf) if self._final else self._safe_end(pos)
            if end > pos:
                self._commit(end)
            return False
        self._commit(m.start())
        return self._trigger(m.start(), m.group())

    def _trigger(self, at: int, text: str) -> bool:
        if text == "```":
            self._state, self._fence, self._cursor = "fence", at, at + 3
            return True
        if text in "{[":
            return self._start(at, "brace", at + 1)
        if text == "<function=":
            return self._start(at, "ftag", at + len(text))
        return self._start(at, "builtin", at + len(text))

    def _start(self, at: int, kind: Kind, cursor: int) -> bool:
        self._cand = _Cand(kind=kind, start=at, cursor=cursor)
        if kind in ("builtin", "bare"):
            self._cand.balance = Balance("(", cursor - 1)
            self._cand.phase = "balance"
        self._state = "cand"
        return True

    def _safe_end(self, pos: int) -> int:
        """Where committing must stop: the text may end in the start of a trigger."""
        buf = self._buf
        for k in range(max(pos, len(buf) - self._t.longest), len(buf)):
            tail = buf[k:]
            if tail in self._t.prefixes and (tail[0] in "<`" or k == 0 or not _word(buf[k - 1])):
                return k
        return len(buf)

    def _step_fence(self) -> bool:
        buf, cur = self._buf, self._cursor
        info_end = _end(_FENCE_INFO, buf, cur)
        if not self._final and (info_end == len(buf) or buf[info_end:] == "\r"):
            return False
        line_end = info_end + (2 if buf.startswith("\r\n", info_end) else 1)
        if info_end == len(buf) or buf[line_end - 1] != "\n":
            return self._fence_is_prose(self._fence + 3)
        nxt = len(buf) - len(buf[line_end:].lstrip(" \t\r\n"))
        if nxt == len(buf):
            return False if not self._final else self._fence_is_prose(len(buf))
        m = self._t.regex.match(buf, nxt)
        if m is None or m.group() == "```":
            if not self._final and buf[nxt:] in self._t.prefixes:
                return False
            return self._fence_is_prose(line_end)
        self._state = "prose"
        return self._trigger(nxt, m.group())

    def _fence_is_prose(self, end: int) -> bool:
        self._commit(end)
        self._fence = -1
        self._state = "prose"
        return True

    # --- candidates -------------------------------------------------------------------------

    def _step_cand(self) -> bool:
        cand = self._cand
        assert cand is not None
        if cand.kind == "brace":
            return self._brace(cand)
        if cand.kind == "ftag":
            return self._ftag(cand)
        return self._paren(cand)

    def _brace(self, cand: _Cand) -> bool:
        buf = self._buf
        if cand.phase == "head":
            opener = buf[cand.start]
            rest = buf[cand.cursor : cand.cursor + 200].lstrip(" \t\r\n")
            if not rest:
                return self._wait_or(cand, cand.start + 1)
            if opener == "{":
                # A key: quoted, or (as models sometimes write) a bare word before a colon.
                m = _KEY.match(rest)
                if m is not None and m.end() == len(rest) and not m.group(1):
                    return self._wait_or(cand, cand.start + 1)
                ok = rest[0] in "\"'" or (m is not None and bool(m.group(1)))
            elif rest[0] == "{":
                ok = True
            else:
                m = _IDENT.match(rest)
                if m is not None and m.end() == len(rest):
                    return self._wait_or(cand, cand.start + 1)
                ok = m is not None and rest[m.end()] == "("
            if not ok:
                return self._not_a_call(cand, cand.start + 1)
            cand.balance = Balance(opener, cand.start)
            cand.phase = "balance"
        assert cand.balance is not None
        if cand.start in self._open_at_end:
            return self._read(cand, len(buf), complete=False)
        end = cand.balance.feed(buf, cand.cursor)
        if end is None:
            cand.cursor = len(buf)
            if not self._final:
                return False
            self._open_at_end.update(cand.balance.open_at)
            return self._read(cand, len(buf), complete=False)
        return self._read(cand, end, complete=not cand.balance.failed)

    def _ftag(self, cand: _Cand) -> bool:
        buf = self._buf
        if cand.phase == "head":
            gt = buf.find(">", cand.cursor, cand.cursor + 100)
            bad = re.search(r"[\n<{]", buf[cand.cursor : gt if gt >= 0 else cand.cursor + 100])
            if bad or (gt < 0 and len(buf) >= cand.cursor + 100):
                return self._not_a_call(cand, cand.start + 1)
            if gt < 0:
                return self._wait_or(cand, cand.start + 1)
            cand.name = buf[cand.cursor : gt]
            cand.cursor = gt + 1
            cand.phase = "args"
        if cand.phase == "args":
            nxt = len(buf) - len(buf[cand.cursor :].lstrip(" \t\r\n"))
            if nxt == len(buf) or (buf[nxt:] in _CLOSE_PREFIXES and not self._final):
                if not self._final:
                    return False
                return self._read(cand, cand.cursor, complete=True)
            if buf.startswith(_CLOSE_TAG, nxt):
                return self._read(cand, nxt + len(_CLOSE_TAG), complete=True)
            if buf[nxt] != "{":
                return self._read(cand, cand.cursor, complete=True, no_args=True)
            cand.body_start = nxt
            cand.balance = Balance("{", nxt)
            cand.cursor = nxt + 1
            cand.phase = "balance"
        if cand.phase == "balance":
            assert cand.balance is not None
            end = cand.balance.feed(buf, cand.cursor)
            if end is None:
                cand.cursor = len(buf)
                if not self._final:
                    return False
                cand.body_end = len(buf)
                return self._read(cand, len(buf), complete=False)
            cand.body_end = end
            cand.cursor = end
            cand.phase = "close"
        nxt = len(buf) - len(buf[cand.cursor :].lstrip(" \t"))
        if buf.startswith(_CLOSE_TAG, nxt):
            return self._read(cand, nxt + len(_CLOSE_TAG), complete=True)
        if not self._final and (nxt == len(buf) or buf[nxt:] in _CLOSE_PREFIXES):
            return False
        return self._read(cand, cand.body_end, complete=True)

    def _paren(self, cand: _Cand) -> bool:
        assert cand.balance is not None
        end = cand.balance.feed(self._buf, cand.cursor)
        if end is None:
            cand.cursor = len(self._buf)
            if not self._final:
                return False
            self._open_at_end.update(cand.balance.open_at)
            return self._read(cand, len(self._buf), complete=False)
        return self._read(cand, end, complete=not cand.balance.failed)

    def _wait_or(self, cand: _Cand, prose_end: int) -> bool:
        return False if not self._final else self._not_a_call(cand, prose_end)

    def _read(self, cand: _Cand, end: int, *, complete: bool, no_args: bool = False) -> bool:
        span = self._buf[cand.start : end]
        reading: Reading | None
        if cand.kind == "brace":
            if span[0] == "{" or span[1:].lstrip().startswith("{"):
                reading = read_json(span, complete=complete)
            else:
                reading = read_python_list(span, complete=complete)
        elif cand.kind == "builtin":
            reading = read_builtin(span, self.allowed, complete=complete)
        elif cand.kind == "bare":
            reading = read_bare(span, complete=complete)
        else:
            body = None
            if cand.body_start >= 0:
                body = self._buf[cand.body_start : cand.body_end]
            reading = read_function_tag(cand.name, body, complete=complete)
            if no_args:
                reading = Reading(
                    form="function_tag",
                    broken=f"the call to '{cand.name.strip()}' has no JSON arguments after it",
                    name=cand.name.strip(),
                )
        if reading is None:
            whole = complete and cand.kind == "brace"
            return self._not_a_call(cand, end if whole else cand.start + 1)
        if self._block is None:
            start = self._fence if self._fence >= 0 else cand.start
            self._commit(start)
            self._block = Block(before=self._line_text, bare=cand.kind == "bare")
        self._block.found.append(Found(text=span, reading=reading))
        self._block.last_end = end
        self._cand = None
        self._fence = -1
        self._state, self._cursor, self._newline = "after", end, False
        return True

    def _not_a_call(self, cand: _Cand, prose_end: int) -> bool:
        self._cand = None
        if self._block is not None:
            # The block ends here, before this span; the span is scanned again as prose.
            self._end_block(after_text=not self._newline, at_end=False)
            return True
        self._commit(prose_end)
        self._fence = -1
        self._state = "prose"
        return True

    # --- blocks -----------------------------------------------------------------------------

    def _step_after(self) -> bool:
        block = self._block
        assert block is not None
        buf = self._buf
        while True:
            sep_end = _end(_SEPARATORS, buf, self._cursor)
            if "\n" in buf[self._cursor : sep_end]:
                self._newline = True
            self._cursor = sep_end
            if buf.startswith("```", sep_end):
                line = _end(_BLANK, buf, sep_end + 3)
                if line == len(buf) and not self._final:
                    return False
                if line == len(buf) or buf[line] in "\r\n":
                    block.last_end = self._cursor = line
                    continue
            break
        if sep_end == len(buf):
            if not self._final:
                return False
            self._end_block(after_text=False, at_end=True)
            return True
        if block.bare:
            m = _BARE.match(buf, sep_end)
            if m:
                return self._start(sep_end, "bare", m.end())
            if not self._final and _BARE_PARTIAL.match(buf, sep_end):
                return False
        else:
            m = self._t.regex.match(buf, sep_end)
            if m and m.group() != "```":
                return self._trigger(sep_end, m.group())
            if not self._final and buf[sep_end:] in self._t.prefixes:
                return False
        self._end_block(after_text=not self._newline, at_end=False)
        return True

    def _end_block(self, *, after_text: bool, at_end: bool) -> None:
        block = self._block
        assert block is not None
        self._block = None
        self._state = "prose"
        mention = not self.tagged and block.before and after_text
        if mention or (block.bare and not at_end):
            self._commit(block.last_end)
            return
        # A trailing `;` or `,` belongs to the calls, not to the prose after them.
        m = _TRAILING_SEPARATORS.match(self._buf, block.last_end)
        if m is not None:
            block.last_end = m.end()
        block.text = self._buf[self._pos : block.last_end]
        if self.tagged:
            self.records.append(block)
        else:
            decide_block(block, self.allowed, self.outcome, strong=False)
        self._pos = block.last_end
        self._line_text = True
        self._fresh = False


def _end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern` (which may match empty) stops matching at `pos`."""
    m = pattern.match(text, pos)
    return m.end() if m is not None else pos


def _word(ch: str) -> bool:
    return ch.isalnum() or ch in "_."


_CLOSE_PREFIXES = frozenset(_CLOSE_TAG[:k] for k in range(1, len(_CLOSE_TAG)))
