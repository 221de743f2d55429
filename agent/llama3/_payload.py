"""What follows `<|python_tag|>`: calls in any form, or code for code_interpreter.

The tag says "this is a call", so nothing here is prose by accident (FORMAT.md §6, §12):
1. the whole payload is calls → those calls (names checked; a python-style call that names
   no tool or has positional arguments is code when it is valid Python and code_interpreter
   is offered: `print(1)`, `[print(end="x")]` with tools that have no `print`);
   A known tool's `.call(...)` spaced out (`my_tool . call ( a = 1 )`) is that call too;
2. valid Python → code_interpreter, verbatim (a built-in pattern inside code stays code);
3. calls with prose around them → the calls, the prose is content;
4. something that starts like JSON, a list or a tag but reads as nothing → malformed (never
   sent to code_interpreter);
5. anything else → code_interpreter (code need not be valid Python: the sandbox reports it).
"""

from __future__ import annotations

import re

from agent.llama3._calls import CALL_NAMES, Call, read_builtin
from agent.llama3._literal import is_python
from agent.llama3._outcome import Block, Found, Outcome, decide_block, unknown_tool
from agent.llama3._scan import Scanner
from agent.llama3._types import MalformedCall

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
    scanner = Scanner(allowed=allowed, tagged=True)
    scanner.feed(payload)
    scanner.finish()
    blocks = [r for r in scanner.records if isinstance(r, Block)]
    prose = "".join(r for r in scanner.records if isinstance(r, str))
    if len(blocks) == 1 and not prose.strip():
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
    if code_ok and is_python(payload):
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
