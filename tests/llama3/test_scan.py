"""`lone_calls` and `lone_json`: the shortcuts for a python-tag payload that is one JSON object
must decide exactly what the scanner decides, and step aside whenever it is anything else."""

from __future__ import annotations

import pytest

from agent.llama3 import ToolCall, _parse
from agent.llama3._scan import Outcome, lone_calls, lone_json

ALLOWED = frozenset({"add", "get_weather"})

TAKEN = [
    '{"name": "add", "parameters": {"a": 1, "b": 2}}',
    '  \n{"name": "add", "parameters": {"a": 1, "b": 2}}\r\n ',
    '{"name": "nope", "parameters": {}}',  # unknown tool: malformed, as the scanner says
    '{"name": "add", "arguments": "{\\"a\\": 1}"}',
    '{"name": "add", "arguments": "[1]"}',  # broken arguments
    '{"name": "add"}',
    '{"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}',
    '{"tool_calls": [{"name": "add", "parameters": {}}, {"name": "x", "parameters": {}}]}',
    '{"name": "add", "parameters": {"text": "a } brace and a \\" quote"}}',
]
REFUSED = [
    "",
    "   ",
    "{}",
    '[{"name": "add", "parameters": {}}]',  # a list: the scanner's
    "{'name': 'add', 'parameters': {}}",  # a Python literal
    '{"name": "add", "parameters": {}} {"name": "add", "parameters": {}}',
    '{"name": "add", "parameters": {}};',
    '\x0c{"name": "add", "parameters": {}}',  # a blank the scanner keeps as prose
    '{"name": "add", "parameters": {"a": NaN}}',
    '{"name": "add", "parameters": {"a": 1}',  # cut off
    '{"a": 1}',  # data
    "{" + " " * 300 + '"name": "add", "parameters": {}}',  # past the head window
    "print(1)",
]


def _read(payload: str, *, shortcut: str | None, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """`read_payload` with one shortcut (`lone_calls`, `lone_json`) or none: the scanner's."""
    for name in ("lone_calls", "lone_json"):
        if name != shortcut:
            monkeypatch.setattr(_parse, name, lambda payload: None)
    outcome = Outcome()
    _parse.read_payload(payload, ALLOWED, outcome)
    monkeypatch.undo()
    return outcome


@pytest.mark.parametrize("payload", TAKEN)
def test_the_shortcut_decides_what_the_scanner_decides(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lone_json(payload) is not None
    scanned = _read(payload, shortcut=None, monkeypatch=monkeypatch)
    assert _read(payload, shortcut="lone_json", monkeypatch=monkeypatch) == scanned
    assert _read(payload, shortcut="lone_calls", monkeypatch=monkeypatch) == scanned


@pytest.mark.parametrize("payload", REFUSED)
def test_anything_else_goes_to_the_scanner(payload: str) -> None:
    assert lone_json(payload) is None
    assert lone_calls(payload) is None


def test_the_calls_shortcut_takes_good_calls_only() -> None:
    # Botched arguments, data and unknown names are `lone_json`'s (and `decide_block`'s).
    assert lone_calls('{"name": "add", "arguments": "[1]"}') is None
    assert lone_calls('{"name": "add", "id": 7, "x": 1}') is None
    calls = lone_calls('{"name": "nope", "parameters": {"a": 1}}')
    assert calls == [ToolCall(name="nope", arguments={"a": 1})]
    assert _parse.parse_completion(
        '<|python_tag|>{"name": "nope", "parameters": {}}', tools=["add"]
    ).malformed
