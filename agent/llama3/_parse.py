"""Parse what Llama 3.x wrote: prose, tool calls in every form it uses, and botched calls.

`parse_completion` and `StreamParser` share one incremental machine, so the streamed result is
the one-shot result by construction. The machine splits special tokens off the text:

- a leading `<|start_header_id|>assistant<|end_header_id|>` is skipped;
- `<|eot_id|>`, `<|eom_id|>`, `<|end_of_text|>` (or a later `<|start_header_id|>`) end the text;
  anything after them is ignored. When none is there (Ollama strips them), the stop reason is
  inferred: `end_of_message` when a built-in, code or JSON call (or `<|python_tag|>`) was made;
- `<|python_tag|>` starts a call payload (see `read_payload`); several tags make several calls.

The text before the first tag goes through the scanner (`_scan.Scanner`), which finds calls written
without a tag (Ollama may strip it) and leaves prose alone.

Names: with `tools` given, a call written in a form that could just be data (a JSON object, a
python list, a bare `f(x=1)`) whose name is no tool is not a call: it stays prose. In a form
that can only be a call (`<function=...>`, `brave_search.call(...)`, anything after the python
tag) it is reported as malformed, so the loop can tell the model; so is a completion that is
nothing but JSON in the strict call shape (`{"name": ..., "parameters": {...}}`, the OpenAI
envelope, or a list of them). A JSON object with a name and no arguments is a call only when it
is the whole completion (or follows the tag) and names an offered tool. Malformed calls keep
their text in `content`; calls do not. `StreamParser.feed` shows neither.

Hostile text (megabytes of `<|`, of unclosed brackets, of calls) parses at C speed: brackets
nested past `_calls.MAX_DEPTH` never close, and past `_scan.MAX_CANDIDATES` possible calls in
one segment the rest is prose, never read for calls (a model that was writing calls then gets a
malformed call saying so). Decisions still depend on the text alone, so streamed equals whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from agent.llama3._calls import CALL_NAMES, Call, is_python, read_builtin
from agent.llama3._scan import (
    TOO_MANY_CALLS,
    Block,
    Found,
    Outcome,
    Scanner,
    decide_block,
    lone_calls,
    lone_json,
    unknown_tool,
)
from agent.llama3._special import (
    END_HEADER,
    END_OF_TEXT,
    EOM,
    EOT,
    LONGEST_SPECIAL,
    PYTHON_TAG,
    SPECIAL_FIND,
    SPECIAL_PREFIXES,
    SPECIAL_SET,
    SPECIAL_TOKEN_RE,
    START_HEADER,
    STOP_TOKENS,
)
from agent.llama3._types import MalformedCall, ParsedCompletion, StopReason, ToolSpec

_log = logging.getLogger("agent.llama3")


def allowed_names(tools: Iterable[Any] | None) -> frozenset[str] | None:
    """The call names `tools` allows: names as given; a `ToolSpec` (or an object with a
    `.spec`, or a neutral dict) gives its built-in name when it serves a built-in."""
    if tools is None:
        return None
    if type(tools) is tuple and all(type(t) is str for t in tools):
        return _names(tools)
    if type(tools) is frozenset and all(type(t) is str for t in tools):
        return tools  # already names (`parse_completion` reads them once)
    names: set[str] = set()
    for tool in tools:
        if isinstance(tool, str):
            names.add(tool)
            continue
        spec = tool if isinstance(tool, ToolSpec) else getattr(tool, "spec", None)
        if isinstance(spec, ToolSpec):
            names.add(spec.builtin or spec.name)
        elif isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
            names.add(tool["name"])
    return frozenset(names)


@lru_cache(maxsize=64)
def _names(names: tuple[str, ...]) -> frozenset[str]:
    # The loop names its tools the same way for every completion: one set (its hash computed
    # once) serves them all, and the scanner's triggers are found by it.
    return frozenset(names)


# The stop reason each end token (`STOP_TOKENS`) gives.
_ENDS: dict[str, StopReason] = {
    EOM: "end_of_message",
    EOT: "end_of_turn",
    END_OF_TEXT: "end_of_turn",
}


class _Machine:
    def __init__(self, tools: Iterable[Any] | None) -> None:
        self.allowed = allowed_names(tools)
        self.prose = Scanner(allowed=self.allowed)
        self.payloads: list[list[str]] = []
        self.stop: str | None = None
        self._pending = ""
        self._mode = "prose"  # prose | header | payload | done
        self._started = False

    def feed(self, chunk: str, *, final: bool = False) -> None:
        if self._mode == "done":
            return  # what follows an end token is ignored: not even looked at
        if not self._pending and "<" not in chunk:
            # Most chunks: no special token can start in them.
            if self._mode == "payload":
                self.payloads[-1].append(chunk)
            else:
                self._plain(chunk)
            return
        text = self._pending + chunk
        i = 0
        # Special tokens are found by their shape, in C, and the text between them goes on in
        # one piece: a Python step per `<|` made text full of lookalikes slow. Every token ends
        # in `|>`: text without one (however many `<|` it holds) needs no regex at all.
        shapes = SPECIAL_FIND.finditer(text) if "|>" in text else ()
        for m in shapes:
            if m.group() in SPECIAL_SET:
                self._plain(text[i : m.start()])
                self._special(m.group())
                i = m.end()
        end = len(text)
        if not final:
            # Hold back the unfinished start of a special token the text may end in.
            k = text.find("<", max(i, end - LONGEST_SPECIAL + 1))
            while k >= 0:
                if text[k:] in SPECIAL_PREFIXES:
                    end = k
                    break
                k = text.find("<", k + 1)
        self._plain(text[i:end])
        self._pending = text[end:]

    def _plain(self, text: str) -> None:
        if not text:
            return
        if self._mode == "prose":
            self._started = self._started or not text.isspace()
            self.prose.feed(text)
        elif self._mode == "payload":
            self.payloads[-1].append(text)

    def _special(self, token: str) -> None:
        if self._mode == "done":
            return
        if self._mode == "header":
            if token == END_HEADER:
                self._mode = "prose"
            return
        if token == START_HEADER and self._mode == "prose" and not self._started:
            self._mode = "header"
        elif token in STOP_TOKENS or token == START_HEADER:
            self.stop = token if token in STOP_TOKENS else None
            self.prose.finish()
            self._mode = "done"
        elif token == PYTHON_TAG:
            self.prose.finish()
            self.payloads.append([])
            self._mode = "payload"

    def finish(self) -> ParsedCompletion:
        self.feed("", final=True)
        self.prose.finish()
        outcome = self.prose.outcome
        for payload in self.payloads:
            read_payload("".join(payload), self.allowed, outcome)
        return ParsedCompletion(
            content="".join(outcome.content).strip(),
            tool_calls=tuple(outcome.calls),
            malformed=tuple(outcome.malformed),
            stop_reason=self._stop_reason(outcome),
        )

    def _stop_reason(self, outcome: Outcome) -> StopReason:
        if self.stop is not None:
            return _ENDS[self.stop]
        if self.payloads or outcome.forms & {"json", "builtin", "code"}:
            return "end_of_message"
        return "end_of_turn"


def parse_completion(text: str, *, tools: Iterable[Any] | None = None) -> ParsedCompletion:
    """Read a completion: its prose (`content`), its `tool_calls` and its `malformed` calls.

    `tools`: the names of the tools the model was offered (or their `ToolSpec`s / `Tool`s);
    built-ins count under their built-in name (`brave_search`). With `tools`, JSON or a list
    that names no tool is taken as an answer, not a call. Never raises.
    """
    try:
        allowed = allowed_names(tools)  # once: `tools` may be an iterator
        tagged = _tagged_calls(text, allowed)
        if tagged is not None:
            return tagged
        machine = _Machine(allowed)
        machine.feed(text)
        return machine.finish()
    except Exception:  # the promise is "never raises"; the fuzz tests keep this path unused
        return _fallback(text)


def _tagged_calls(text: str, allowed: frozenset[str] | None) -> ParsedCompletion | None:
    """The usual completion, read without the machine: the python tag, then JSON calls to
    offered tools, then maybe an end token and nothing else. None for anything else (the
    machine reads it, and makes the same of this shape: the tests hold the two together)."""
    if not text.startswith(PYTHON_TAG):
        return None
    payload = text[len(PYTHON_TAG) :]
    stop_reason: StopReason = "end_of_message"  # a tagged call without its end token
    if payload.endswith("|>"):
        for token, reason in _ENDS.items():
            if payload.endswith(token):
                payload, stop_reason = payload[: -len(token)], reason
                break
    if "<|" in payload or not payload.strip():
        return None
    calls = lone_calls(payload)
    if not calls or (allowed is not None and not all(c.name in allowed for c in calls)):
        return None
    return ParsedCompletion(
        content="", tool_calls=tuple(calls), malformed=(), stop_reason=stop_reason
    )


def _fallback(text: str) -> ParsedCompletion:
    """The last resort after a parser bug: the text as plain content, and a warning with the
    traceback so the bug is seen (the run goes on as if the model had answered)."""
    _log.warning(
        "agent.llama3 could not parse a completion of %d characters (a bug: please report it "
        "with the completion); it is taken as plain text with no tool calls",
        len(text),
        exc_info=True,
    )
    return ParsedCompletion(content=plain_text(text))


def plain_text(text: str) -> str:
    """What the model wrote, read as prose only: the text up to the first end token, special
    tokens removed, stripped. For replies that must not be read as calls (an agent that offers
    no tools), and the parser's last resort."""
    for stop in STOP_TOKENS:
        text = text.split(stop, 1)[0]
    return SPECIAL_TOKEN_RE.sub("", text).strip()


class StreamParser:
    """Parse a completion chunk by chunk, showing prose as soon as it cannot be a call.

    `feed(chunk)` returns the text that is now safe to show; `finish()` returns the same result
    as `parse_completion` on the whole text, and its `content` starts with everything `feed`
    returned (the rest is `content[len(parser.shown):]`). Linear in the text overall.

    `feed` never returns a call's text. A good call's text is not in `content`; a botched
    call's is (as in Meta's parser), so `feed` shows nothing from the first botched call on:
    the rest, minus the `malformed` calls' text, is the caller's to show once the parse is done.
    """

    def __init__(self, *, tools: Iterable[Any] | None = None) -> None:
        self._machine = _Machine(tools)
        self._tools = self._machine.allowed
        self._content = self._machine.prose.outcome.content  # only ever appended to
        self._chunks: list[str] = []
        self._seen = 0
        self._hold = ""
        self._shown: list[str] = []
        self._lead = True
        self._broken = False

    @property
    def shown(self) -> str:
        """Everything `feed` has returned so far."""
        return "".join(self._shown)

    def feed(self, chunk: str) -> str:
        """Take the next chunk; return the newly safe text (maybe empty)."""
        self._chunks.append(chunk)
        if self._broken:
            return ""
        try:
            self._machine.feed(chunk)
            if len(self._content) == self._seen:  # nothing new (inside a call, say)
                return ""
            return self._emit()
        except Exception:
            # `finish` parses the whole text again (and warns if that fails too).
            _log.warning(
                "agent.llama3 stream parser failed (a bug: please report it); "
                "the completion will be parsed whole when it ends",
                exc_info=True,
            )
            self._broken = True
            return ""

    def _emit(self) -> str:
        # Content pieces only ever get appended; show them with the surrounding whitespace held
        # back, since the final content is stripped. A botched call's text stays in the content
        # but is no answer: nothing from it on is shown (`content` must start with `shown`).
        outcome = self._machine.prose.outcome
        end = len(self._content) if outcome.botched_at is None else outcome.botched_at
        if self._seen >= end:
            return ""
        text = self._hold + "".join(self._content[self._seen : end])
        self._seen = end
        if self._lead:
            text = text.lstrip()
            self._lead = not text
        body = text.rstrip()
        self._hold = text[len(body) :]
        if body:
            self._shown.append(body)
        return body

    def finish(self) -> ParsedCompletion:
        """The parse of the whole completion (equal to `parse_completion` on it)."""
        if self._broken:
            return parse_completion("".join(self._chunks), tools=self._tools)
        try:
            return self._machine.finish()
        except Exception:
            return _fallback("".join(self._chunks))


# --- the python-tag payload -------------------------------------------------------------------
#
# What follows `<|python_tag|>`: calls in any form, or code for code_interpreter.
#
# The tag says "this is a call", so nothing here is prose by accident (FORMAT.md §6, §12):
# 1. the whole payload is calls → those calls (names checked; a python-style call that names
#    no tool or has positional arguments is code when it is valid Python and code_interpreter
#    is offered: `print(1)`, `[print(end="x")]` with tools that have no `print`);
#    A known tool's `.call(...)` spaced out (`my_tool . call ( a = 1 )`) is that call too;
# 2. valid Python → code_interpreter, verbatim (a built-in pattern inside code stays code);
# 3. calls with prose around them → the calls, the prose is content;
# 4. something that starts like JSON, a list or a tag but reads as nothing → malformed (never
#    sent to code_interpreter);
# 5. anything else → code_interpreter (code need not be valid Python: the sandbox reports it).

_PYTHONIC = frozenset({"python_list", "bare"})
_DOTCALL = re.compile(r"\s*([A-Za-z_]\w*)\s*\.\s*call\s*\((.*)\)\s*", re.DOTALL)
_FENCED = re.compile(r"\s*```[\w+.\-]*[ \t]*\r?\n(.*?)\r?\n?```\s*", re.DOTALL)


def read_payload(payload: str, allowed: frozenset[str] | None, outcome: Outcome) -> None:
    """Add what one python-tag payload holds to `outcome`."""
    code_ok = allowed is None or "code_interpreter" in allowed
    stripped = payload.strip()
    if not stripped:
        _malformed(outcome, "", "<|python_tag|> was followed by nothing; write the call after it")
        return
    calls = lone_calls(payload)  # the usual payload: one JSON call to a tool
    if calls is not None and (allowed is None or all(c.name in allowed for c in calls)):
        outcome.calls.extend(calls)  # what `decide_block` makes of its `lone_json` block
        outcome.forms.add("json")
        return
    block = lone_json(payload)  # read without the scanner (the same block)
    if block is not None:
        decide_block(block, allowed, outcome, strong=True)
        return
    scanner = Scanner(allowed=allowed, tagged=True)
    scanner.feed(payload)
    scanner.finish()
    blocks = [r for r in scanner.records if isinstance(r, Block)]
    prose = "".join(r for r in scanner.records if isinstance(r, str))
    if scanner.spent:
        # Calls the scanner gave up on: they are what they are, never code to parse whole.
        _malformed(outcome, "", TOO_MANY_CALLS)
    elif len(blocks) == 1 and not prose.strip():
        block = blocks[0]
        if not (_unknown_pythonic(block, allowed) and is_python(payload)):
            decide_block(block, allowed, outcome, strong=True)
        elif code_ok:
            _code(payload, outcome)
        else:
            _malformed(outcome, payload, unknown_tool("code_interpreter", allowed))
            outcome.add_botched(payload)
        return
    if not blocks and _spaced_dotcall(payload, allowed, outcome):
        return
    if not scanner.spent and code_ok and is_python(payload):
        _code(payload, outcome)
        return
    if blocks:
        for record in scanner.records:
            if isinstance(record, str):
                outcome.content.append(record)
            else:
                decide_block(record, allowed, outcome, strong=True)
        return
    if stripped[0] in "{[<":
        _malformed(outcome, payload, "the tool call after <|python_tag|> is cut off or garbled")
        outcome.add_botched(payload)
    elif code_ok:
        _code(payload, outcome)
    else:
        _malformed(outcome, payload, unknown_tool("code_interpreter", allowed))
        outcome.add_botched(payload)


def _spaced_dotcall(payload: str, allowed: frozenset[str] | None, outcome: Outcome) -> bool:
    """`  my_tool  .  call  (  arg  =  "value"  )`: a known tool's `.call`, spaced out."""
    m = _DOTCALL.fullmatch(payload)
    if m is None:
        return False
    name = m.group(1)
    if name not in CALL_NAMES and (allowed is None or name not in allowed):
        return False
    span = f"{name}.call({m.group(2)})"
    reading = read_builtin(span, allowed, complete=True)
    block = Block(before=False, bare=False, found=[Found(text=payload, reading=reading)])
    block.text = payload
    decide_block(block, allowed, outcome, strong=True)
    return True


def _unknown_pythonic(block: Block, allowed: frozenset[str] | None) -> bool:
    """Python-style calls that are broken or name no tool: as valid Python, they are code."""
    readings = [f.reading for f in block.found]
    if any(r.form not in _PYTHONIC for r in readings):
        return False
    if any(r.is_broken for r in readings):
        return True
    return allowed is not None and any(c.name not in allowed for r in readings for c in r.calls)


def _code(payload: str, outcome: Outcome) -> None:
    fenced = _FENCED.fullmatch(payload)
    code = fenced.group(1) if fenced else payload
    outcome.calls.append(Call(name="code_interpreter", arguments={"code": code}))
    outcome.forms.add("code")


def _malformed(outcome: Outcome, text: str, reason: str) -> None:
    outcome.malformed.append(MalformedCall(text=text, reason=reason, name=None))
    outcome.forms.add("code")
