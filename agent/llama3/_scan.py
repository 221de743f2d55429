"""The incremental scanner behind `parse_completion` and `StreamParser` (text without special
tokens: the caller splits those off).

It walks the text once, left to right. Prose is committed as soon as nothing later can change it;
at a possible call (`{`, `[`, `<function=`, `brave_search.call(`, a fence, or `name(` at the very
start: `_candidates.py`, the call-start finder) it waits until the span closes and reads it
(`read_span`). Adjacent calls, separated by whitespace, `;`, `,` or a fence, form a block
(`advance` follows each span to its end). A block is a mention, not a call, when it sits inside a
sentence: prose on its line before and after it, unless the prose before ends a sentence and the
prose after starts one (`Send {...} to the API` is a mention; `Here is the result: {...} Would you
like more?` is a call). A block with a `name.call(...)` is a mention whenever words follow it on
its line (`brave_search.call(query="x") is how it searches`), and a block of bare `name(...)` calls
counts only when it is the whole text: written in the middle of prose, both are quotes.

Every decision depends on the text alone, never on how it was split into chunks, so the
streaming parser and the one-shot parser agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from agent.llama3._calls import (
    CALL_NAMES,
    MISSING,
    NAME_RE,
    Call,
    Reading,
    json_calls,
    json_reading,
    json_value,
)
from agent.llama3._candidates import (
    BARE,
    BARE_PARTIAL,
    BLANK,
    FENCE_INFO,
    HEAD_WINDOW,
    SENTENCE_END,
    SEPARATORS,
    TRAILING_SEPARATORS,
    WORDS_AHEAD,
    Candidate,
    Kind,
    Prose,
    Span,
    Triggers,
    advance,
    end_of,
    open_candidate,
    read_span,
    triggers,
)
from agent.llama3._types import MalformedCall

# --- blocks and the decision about them -------------------------------------------------------
#
# What a parse found, and the decision about each block of candidate calls.

_WEAK = frozenset({"json", "python_list", "bare"})


@dataclass(frozen=True, kw_only=True)
class Found:
    """One candidate of a block: its text and how it reads."""

    text: str
    reading: Reading


@dataclass(kw_only=True)
class Block:
    """Adjacent candidates meant as calls; `text` spans them with what separates them.

    `leading`: only whitespace comes before it; `alone`: it is all the text (of its segment:
    what comes before `<|python_tag|>` or an end token), fences and separators aside.
    """

    before: bool
    bare: bool
    leading: bool = False
    alone: bool = False
    found: list[Found] = field(default_factory=list)
    last_end: int = 0
    text: str = ""
    dotted: bool = False
    """True when it holds a `name.call(...)` (kept up to date by `add`: the scanner asks after
    every call, and a block of many calls must not be walked each time)."""

    def __post_init__(self) -> None:
        self.dotted = any(f.reading.form == "builtin" for f in self.found)

    def add(self, found: Found) -> None:
        """Append a candidate to the block."""
        self.found.append(found)
        self.dotted = self.dotted or found.reading.form == "builtin"


@dataclass(kw_only=True)
class Outcome:
    """Content pieces in text order, calls, botched calls, and the forms the calls came in."""

    content: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    malformed: list[MalformedCall] = field(default_factory=list)
    forms: set[str] = field(default_factory=set)
    botched_at: int | None = None
    """The index in `content` of the first botched call's text: streaming stops showing there."""

    def add_botched(self, text: str) -> None:
        """Keep a botched call's text in `content` (as Meta's parser does), noting where."""
        if self.botched_at is None:
            self.botched_at = len(self.content)
        self.content.append(text)


def unknown_tool(name: str, allowed: frozenset[str] | None) -> str:
    """The reason given to the model for a call to a tool that does not exist."""
    tools = ", ".join(sorted(allowed or ())) or "none"
    return f"'{name}' is not one of the tools; the tools are: {tools}"


def decide_block(
    block: Block, allowed: frozenset[str] | None, outcome: Outcome, *, strong: bool
) -> None:
    """Turn a block into calls, malformed calls and content.

    Weak forms (JSON, python list, bare call) naming no tool are data, unless another call in
    the same block names a tool, or the block is all the text and is JSON in the strict call
    shape (`{"name": ..., "parameters": {...}}`, or a list of those): then they are attempted
    calls to tools that do not exist, reported as malformed. JSON objects with a name and no
    arguments (`{"name": "search", "id": 7}`) are data, unless one such object is all the text
    and names an offered tool. `strong` (after the python tag) makes every form count as meant.
    """

    if strong and len(block.found) == 1:
        # The usual python-tag payload: one reading whose calls all name tools.
        r = block.found[0].reading
        if (
            r.calls
            and not r.broken
            and not r.bad
            and (allowed is None or all(c.name in allowed for c in r.calls))
        ):
            outcome.calls.extend(r.calls)
            outcome.forms.add(r.form)
            return

    def known(name: str) -> bool:
        return allowed is None or name in allowed

    def is_data(r: Reading) -> bool:
        """Name-only JSON that is not a lone object naming an offered tool."""
        if strong or r.form != "json" or r.is_broken or r.shape != "name_only":
            return False
        lone = block.alone and len(block.found) == 1 and not r.listed
        return not (lone and allowed is not None and all(c.name in allowed for c in r.calls))

    def attempted(r: Reading) -> bool:
        """Strict JSON calls making up the whole text: meant as calls, whatever the names."""
        return block.alone and r.form == "json" and r.shape == "call"

    counted = [f.reading for f in block.found if not is_data(f.reading)]
    any_known = any(not r.is_broken and any(known(c.name) for c in r.calls) for r in counted)
    decided: list[tuple[Found, list[Call], list[MalformedCall]]] = []
    for found in block.found:
        r = found.reading
        weak = not strong and r.form in _WEAK
        if is_data(r):
            decided.append((found, [], []))
            continue
        if r.is_broken:
            if weak and r.name is not None and not known(r.name) and not any_known:
                decided.append((found, [], []))
            else:
                decided.append((found, [], [_malformed(found, r.broken, r.name)]))
            continue
        unknown = [c for c in r.calls if not known(c.name)]
        if unknown and weak and not any_known and not attempted(r):
            decided.append((found, [], []))
            continue
        good = [c for c in r.calls if known(c.name)]
        bad = [_malformed(found, unknown_tool(c.name, allowed), c.name) for c in unknown]
        bad += [_malformed(found, reason, name) for reason, name in r.bad]
        decided.append((found, good, bad))
    if not any(calls or bad for _, calls, bad in decided):
        outcome.content.append(block.text)
        return
    for found, calls, bad in decided:
        outcome.calls.extend(calls)
        outcome.malformed.extend(bad)
        if calls or bad:
            outcome.forms.add(found.reading.form)
        if bad and not calls:
            outcome.add_botched(found.text)
        elif not calls:
            outcome.content.append(found.text)


def _malformed(found: Found, reason: str, name: str | None) -> MalformedCall:
    return MalformedCall(text=found.text, reason=reason, name=name)


def lone_json(payload: str) -> Block | None:
    """The block a tagged `Scanner` makes of `payload` when it is one JSON object that reads
    as calls, blanks around it aside; else None (then only the scanner knows).

    What a model writes after `<|python_tag|>` is nearly always that: one `{"name": ...,
    "parameters": {...}}`. The scanner's way to the same block (a candidate at the brace, its
    end found by `json_end`, then `read_json`) costs several times the reading itself.
    """
    lone = _lone_value(payload)
    if lone is None:
        return None
    text, value = lone
    reading = json_reading(value)
    if reading is None:
        return None  # data, which the scanner hands back to prose
    block = Block(before=False, bare=False, leading=True, alone=True, last_end=len(text))
    block.add(Found(text=text, reading=reading))
    block.text = text
    return block


def lone_calls(payload: str) -> list[Call] | None:
    """The calls of the `lone_json` block of `payload` when it reads as calls with nothing
    botched (the usual payload); else None. Builds no block: `decide_block` would only take
    its calls."""
    lone = _lone_value(payload)
    return None if lone is None else json_calls(lone[1])


def _lone_value(payload: str) -> tuple[str, Any] | None:
    """The text of a payload that is one JSON object, blanks aside, and its value."""
    text = payload.strip(" \t\r\n")  # the scanner commits these as prose, and only these
    if text[:1] != "{" or text[-1:] != "}":
        return None
    # The scanner's head check (a quoted key within `HEAD_WINDOW`), then its span: the whole
    # (`json_end`), then `read_json` of that span: one decoding does for both.
    if text[1 : 1 + HEAD_WINDOW].lstrip(" \t\r\n")[:1] != '"':
        return None
    value = json_value(text)
    return None if value is MISSING else (text, value)


# --- the scanner ------------------------------------------------------------------------------

_KEEP = 1024
"""Committed text kept in the buffer before it is dropped (appending copies the buffer)."""
_BATCH = 65_536
"""Past this much pending text (a call not closed yet), new text is added in batches at least
as large as the buffer: appending copies the buffer, and a chunk at a time over megabytes of an
unclosed call made streaming quadratic. Nothing is shown while a call is pending anyway."""
MAX_CANDIDATES = 1000
"""Possible calls followed in one segment. Past them the rest of the segment is prose, never
read for calls: hostile text (a million `[{(`, or of JSON calls) costs a bounded amount of
Python work, then a C-speed copy. A model that was writing calls when the limit struck is told
(`TOO_MANY_CALLS`); one that wrote a thousand bracketed words of prose is not."""
TOO_MANY_CALLS = (
    f"the completion holds more than {MAX_CANDIDATES} possible tool calls; the text after them "
    "was not read for calls: make fewer calls at a time"
)


@lru_cache(maxsize=64)
def _triggers(allowed: frozenset[str] | None) -> Triggers:
    # Per set of tools: a parser is built for every completion, always with the same tools.
    return triggers(CALL_NAMES | {n for n in allowed or () if NAME_RE.fullmatch(n)})


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
        self._t = _triggers(allowed)
        self.records: list[str | Block] = []
        self.outcome = Outcome()
        self._buf = ""
        self._pos = 0
        self._final = False
        self._state = "prose"
        self._cand: Candidate | None = None
        self._block: Block | None = None
        self._fence = -1
        self._cursor = 0
        self._newline = False
        self._line_text = False
        self._fresh = True
        self._last_char = ""  # the last non-blank character committed
        self._candidates = 0
        self._parked: list[str] = []  # text not yet added to `_buf` (see `_BATCH`)
        self._parked_size = 0
        self.spent = False
        """True when `MAX_CANDIDATES` struck while calls were being read (see `TOO_MANY_CALLS`)."""
        # Brackets a scan left open where it stopped, and where (see `advance`); positions in
        # `_buf`, so it is emptied when committed text is dropped.
        self._cut_off: dict[int, int] = {}

    # --- input ------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Add text and scan as far as is decidable."""
        if self._final:
            return
        if self._state in ("cand", "after") and len(self._buf) > _BATCH:
            self._parked.append(text)
            self._parked_size += len(text)
            if self._parked_size < len(self._buf):
                return
            text = self._unpark()
        self._add(text)

    def finish(self) -> None:
        """The segment is complete: decide everything that is left."""
        if not self._buf and not self._parked:
            self._final = True  # nothing was fed (the usual prose before a python tag)
        elif not self._final:
            if self._parked:
                self._add(self._unpark())
            self._final = True
            self._run()

    def _unpark(self) -> str:
        text = "".join(self._parked)
        self._parked.clear()
        self._parked_size = 0
        return text

    def _add(self, text: str) -> None:
        if self._pos > _KEEP and self._state in ("prose", "spent"):
            # Drop committed text, but one character: a trigger looks one back (`x.call(` is
            # none in `my_x.call(`), and must see the same text however the input was split.
            self._buf = self._buf[self._pos - 1 :]
            self._pos = 1
            self._cut_off.clear()
        self._buf += text
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
        body = text.rstrip()
        newline = text.rfind("\n")
        if newline >= 0:
            self._line_text = bool(text[newline + 1 :].strip())
        elif body:
            self._line_text = True
        if body:
            self._fresh = False
            self._last_char = body[-1]

    # --- the state machine ------------------------------------------------------------------

    def _run(self) -> None:
        steps = _STEPS
        while steps[self._state](self):
            pass

    def _step_prose(self) -> bool:
        buf, pos = self._buf, self._pos
        if self._fresh and self._block is None:
            m = BARE.match(buf, pos)
            if m:
                self._commit(m.start(1))
                return self._start(m.start(1), "bare", m.end())
            if not self._final and BARE_PARTIAL.match(buf, pos):
                return False
        found = self._t.find(buf, pos)
        if found is None:
            end = len(buf) if self._final else self._safe_end(pos)
            if end > pos:
                self._commit(end)
            return False
        at, what = found
        self._commit(at)
        return self._trigger(at, what)

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
        if self._candidates >= MAX_CANDIDATES:
            return self._give_up()
        self._candidates += 1
        self._cand = open_candidate(kind, at, cursor)
        self._state = "cand"
        return True

    def _give_up(self) -> bool:
        """Too many possible calls: decide the block being read, then all the rest is prose."""
        if self._block is not None:
            self.spent = True
            self._end_block(after_text=False, at_end=False)
            if not self.tagged:
                self.outcome.malformed.append(MalformedCall(text="", reason=TOO_MANY_CALLS))
                self.outcome.forms.add("json")
        self._state = "spent"
        return True

    def _step_spent(self) -> bool:
        if len(self._buf) > self._pos:
            self._commit(len(self._buf))
        return False

    def _safe_end(self, pos: int) -> int:
        """Where committing must stop: the text may end in the start of a trigger."""
        buf = self._buf
        start = max(pos, len(buf) - self._t.longest)
        # No trigger holds a blank, so none can start before the last one (most chunks end in
        # a word or two: this leaves a few characters to look at instead of `longest`).
        start = max(start, buf.rfind(" ", start) + 1, buf.rfind("\n", start) + 1)
        m = self._t.held.search(buf, start)
        return len(buf) if m is None else m.start()

    def _step_fence(self) -> bool:
        buf, cur = self._buf, self._cursor
        info_end = end_of(FENCE_INFO, buf, cur)
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
        step = advance(cand, self._buf, final=self._final, cut_off=self._cut_off)
        if step is None:
            return False
        if isinstance(step, Prose):
            return self._not_a_call(cand, step.end)
        return self._read(cand, step)

    def _read(self, cand: Candidate, span: Span) -> bool:
        reading = read_span(cand, self._buf, span, self.allowed)
        if reading is None:
            whole = span.complete and cand.kind == "brace"
            return self._not_a_call(cand, span.end if whole else cand.start + 1)
        if self._block is None:
            start = self._fence if self._fence >= 0 else cand.start
            self._commit(start)
            self._block = Block(
                before=self._line_text, bare=cand.kind == "bare", leading=self._fresh
            )
        text = self._buf[cand.start : span.end]
        self._block.add(Found(text=text, reading=reading))
        self._block.last_end = span.end
        self._cand = None
        self._fence = -1
        self._state, self._cursor, self._newline = "after", span.end, False
        return True

    def _not_a_call(self, cand: Candidate, prose_end: int) -> bool:
        self._cand = None
        if self._block is not None:
            # The block ends here, before this span; the span is scanned again as prose.
            after_text = not self._newline
            self._end_block(
                after_text=after_text, at_end=False, words_after=after_text and self._block.dotted
            )
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
            sep_end = end_of(SEPARATORS, buf, self._cursor)
            if "\n" in buf[self._cursor : sep_end]:
                self._newline = True
            self._cursor = sep_end
            if buf.startswith("```", sep_end):
                line = end_of(BLANK, buf, sep_end + 3)
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
            m = BARE.match(buf, sep_end)
            if m:
                return self._start(sep_end, "bare", m.end())
            if not self._final and BARE_PARTIAL.match(buf, sep_end):
                return False
        else:
            m = self._t.regex.match(buf, sep_end)
            if m and m.group() != "```":
                return self._trigger(sep_end, m.group())
            if not self._final and buf[sep_end:] in self._t.prefixes:
                return False
        words = False
        if block.dotted and not self._newline and not self.tagged:
            found = self._words_ahead(sep_end)
            if found is None:
                return False
            words = found
        self._end_block(after_text=not self._newline, at_end=False, words_after=words)
        return True

    def _words_ahead(self, pos: int) -> bool | None:
        """Whether words follow on this line (past a little punctuation); None: not known yet."""
        buf = self._buf
        k = end_of(WORDS_AHEAD, buf, pos)
        if k < len(buf):
            return buf[k].isalnum() or buf[k] == "_"
        return False if self._final else None

    def _end_block(self, *, after_text: bool, at_end: bool, words_after: bool = False) -> None:
        """Decide the block that just ended. It is a mention, not a call, when it sits inside
        a sentence, or (for `name.call(...)`) when words follow it on its line."""
        block = self._block
        assert block is not None
        self._block = None
        self._state = "prose"
        in_sentence = block.before and after_text and self._in_sentence()
        mention = not self.tagged and (in_sentence or words_after)
        if mention or (block.bare and not at_end):
            self._commit(block.last_end)
            return
        # A trailing `;` or `,` belongs to the calls, not to the prose after them.
        m = TRAILING_SEPARATORS.match(self._buf, block.last_end)
        if m is not None:
            block.last_end = m.end()
        block.text = self._buf[self._pos : block.last_end]
        block.alone = block.leading and at_end
        if self.tagged:
            self.records.append(block)
        else:
            decide_block(block, self.allowed, self.outcome, strong=False)
        self._pos = block.last_end
        self._line_text = True
        self._fresh = False

    def _in_sentence(self) -> bool:
        """Prose before the block (on its line) runs on into the prose after it: `Send {...} to
        the API` is a mention, while `Here is the result: {...} Would you like more?` ends a
        sentence before the block and starts one after it, so the block stands alone."""
        after = self._buf[self._cursor : self._cursor + 1]
        return not (self._last_char in SENTENCE_END and after.isupper())


_STEPS = {
    "prose": Scanner._step_prose,
    "fence": Scanner._step_fence,
    "cand": Scanner._step_cand,
    "after": Scanner._step_after,
    "spent": Scanner._step_spent,
}
