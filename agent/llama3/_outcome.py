"""What a parse found, and the decision about each block of candidate calls."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.llama3._calls import Call, Reading
from agent.llama3._types import MalformedCall

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

    @property
    def dotted(self) -> bool:
        """True when it holds a `name.call(...)`."""
        return any(f.reading.form == "builtin" for f in self.found)


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
