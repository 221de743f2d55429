"""The incremental scanner behind `parse_completion` and `StreamParser` (text without special
tokens: the caller splits those off).

It walks the text once, left to right. Prose is committed as soon as nothing later can change
it; at a possible call (`{`, `[`, `<function=`, `brave_search.call(`, a fence, or `name(` at the
very start) it waits until the span closes and reads it (`_calls`). Adjacent calls, separated by
whitespace, `;`, `,` or a fence, form a block (`_candidate` follows each span to its end). A
block is a mention, not a call, when it sits inside a sentence: prose on its line before and
after it, unless the prose before ends a sentence and the prose after starts one (`Send {...}
to the API` is a mention; `Here is the result: {...} Would you like more?` is a call). A block
with a `name.call(...)` is a mention whenever words follow it on its line
(`brave_search.call(query="x") is how it searches`), and a block of bare `name(...)` calls
counts only when it is the whole text: written in the middle of prose, both are quotes.

Every decision depends on the text alone, never on how it was split into chunks, so the
streaming parser and the one-shot parser agree by construction.
"""

from __future__ import annotations

from agent.llama3._calls import CALL_NAMES, NAME_RE
from agent.llama3._candidate import (
    Candidate,
    Kind,
    Prose,
    Span,
    advance,
    open_candidate,
    read_span,
)
from agent.llama3._outcome import Block, Found, Outcome, decide_block
from agent.llama3._triggers import (
    BARE,
    BARE_PARTIAL,
    BLANK,
    FENCE_INFO,
    SENTENCE_END,
    SEPARATORS,
    TRAILING_SEPARATORS,
    WORDS_AHEAD,
    end_of,
    is_word,
    triggers,
)

_KEEP = 1024
"""Committed text kept in the buffer before it is dropped (appending copies the buffer)."""


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
        self._t = triggers(frozenset(dotted))
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
        # Brackets a scan left open at the end of the text: a scan from one of them would
        # also reach the end open, so it is not repeated (deep unclosed nesting stays linear).
        self._open_at_end: set[int] = set()

    # --- input ------------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Add text and scan as far as is decidable."""
        if self._final:
            return
        if self._pos > _KEEP and self._state == "prose":
            # Drop committed text, but one character: a trigger looks one back (`x.call(` is
            # none in `my_x.call(`), and must see the same text however the input was split.
            self._buf = self._buf[self._pos - 1 :]
            self._pos = 1
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
        self._cand = open_candidate(kind, at, cursor)
        self._state = "cand"
        return True

    def _safe_end(self, pos: int) -> int:
        """Where committing must stop: the text may end in the start of a trigger."""
        buf = self._buf
        start = max(pos, len(buf) - self._t.longest)
        # No trigger holds a blank, so none can start before the last one (most chunks end in
        # a word or two: this leaves a few characters to look at instead of `longest`).
        start = max(start, buf.rfind(" ", start) + 1, buf.rfind("\n", start) + 1)
        for k in range(start, len(buf)):
            tail = buf[k:]
            if tail in self._t.prefixes and (tail[0] in "<`" or k == 0 or not is_word(buf[k - 1])):
                return k
        return len(buf)

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
        step = advance(cand, self._buf, final=self._final, open_at_end=self._open_at_end)
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
        self._block.found.append(Found(text=text, reading=reading))
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
}
