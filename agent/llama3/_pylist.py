"""Read a Llama 3.2 / 3.3 python-list call: `[f(a=1), g(b="x")]`.

Beyond what Python itself parses, models write:
- hyphenated names (MCP tools such as `add-note`): `[add-note(name='x')]`, which Python reads
  as a subtraction; it is taken as the name when written without spaces;
- one botched call among good ones (a bytes value, `1e999`, a stray quote): the good ones are
  kept and the botched one is reported (`Reading.bad`), so one typo does not cost every call.
"""

from __future__ import annotations

import ast
import re
from itertools import pairwise

from agent.llama3._calls import Call, Reading, botched, call_node, calls_of, func_name
from agent.llama3._literal import parse_expression

HEAD = re.compile(r"\[\s*([A-Za-z_][\w\-]*)\s*\(")
"""How a python-list call starts."""
# Where one call of a list ends and the next begins: `), name(`.
_NEXT_CALL = re.compile(r"\)\s*,\s*(?=[A-Za-z_][\w\-]*\s*\()")
_HYPHENATED = re.compile(r"[A-Za-z_][\w\-]*")
_MAX_PIECES = 64


def read_python_list(span: str, *, complete: bool) -> Reading | None:
    """`[f(a=1), g(b="x")]`: its calls; a botched call; or None when it is just a list."""
    head = HEAD.match(span)
    if head is None:
        return None
    if not complete:
        return botched("python_list", "the python-list tool call is cut off", head.group(1))
    text = span.strip()
    node = parse_expression(text)
    if node is None:
        return _salvage(text, head.group(1))
    if not isinstance(node, ast.List | ast.Tuple) or not node.elts:
        return None
    calls: list[Call] = []
    bad: list[tuple[str, str | None]] = []
    for element in node.elts:
        call = _as_call(element, text)
        if call is None:
            return None
        got = call_node(call)
        if got is None:
            return None
        if isinstance(got, str):
            bad.append((got, func_name(call)))
        else:
            calls.append(got)
    if not calls:
        reason, name = bad[0]
        return botched("python_list", reason, name)
    return calls_of("python_list", calls, tuple(bad))


def _as_call(node: ast.expr, text: str) -> ast.Call | None:
    """The call an element holds, reading `a-b(x=1)` (no spaces) as a call to `a-b`."""
    if isinstance(node, ast.Call):
        return node
    names: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Sub):
        right = current.right
        if names:
            if not isinstance(right, ast.Name):
                return None
            names.append(right.id)
        elif isinstance(right, ast.Call) and isinstance(right.func, ast.Name):
            names.append(right.func.id)
        else:
            return None
        current = current.left
    if not names or not isinstance(current, ast.Name):
        return None
    name = "-".join([current.id, *reversed(names)])
    segment = ast.get_source_segment(text, node) or ""
    m = _HYPHENATED.match(segment)
    if m is None or m.group() != name:
        return None
    call = node.right if isinstance(node, ast.BinOp) else None
    if not isinstance(call, ast.Call) or call.args:
        return None  # `[x-f(2)]` is arithmetic, not a call to `x-f`
    return ast.Call(func=ast.Name(id=name), args=[], keywords=call.keywords)


def _salvage(text: str, first: str) -> Reading:
    """A list that is not valid Python: keep each call that reads on its own."""
    why = "the python-list tool call is not valid Python"
    if not text.endswith("]"):
        return botched("python_list", why, first)
    inner = text[1:-1]
    cuts = [0, *(m.start() + 1 for m in _NEXT_CALL.finditer(inner)), len(inner)]
    if len(cuts) > _MAX_PIECES:
        return botched("python_list", why, first)  # re-parsing would grow quadratically
    calls: list[Call] = []
    bad: list[tuple[str, str | None]] = []
    pending = ""
    for a, b in pairwise(cuts):
        piece = inner[a:b]
        pending += piece
        node = parse_expression(pending.lstrip(" \t\r\n,"))
        call = _as_call(node, pending.lstrip(" \t\r\n,")) if node is not None else None
        if call is None:
            continue
        got = call_node(call)
        if isinstance(got, Call):
            calls.append(got)
        else:
            bad.append((got or why, func_name(call)))
        pending = ""
    if pending.strip():
        head = _HYPHENATED.match(pending.lstrip(" \t\r\n,"))
        bad.append((why, head.group() if head else None))
    if not calls:
        return botched("python_list", why, first)
    return calls_of("python_list", calls, tuple(bad))
