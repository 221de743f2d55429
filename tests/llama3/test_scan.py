"""`lone_json`: the shortcut for a python-tag payload that is one JSON object must decide
exactly what the scanner decides, and step aside whenever it is anything else."""

from __future__ import annotations

import pytest

from agent.llama3 import _parse
from agent.llama3._scan import Outcome, lone_json

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


def _read(payload: str, *, shortcut: bool, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    if not shortcut:
        monkeypatch.setattr(_parse, "lone_json", lambda payload: None)
    outcome = Outcome()
    _parse.read_payload(payload, ALLOWED, outcome)
    monkeypatch.undo()
    return outcome


@pytest.mark.parametrize("payload", TAKEN)
def test_the_shortcut_decides_what_the_scanner_decides(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lone_json(payload) is not None
    assert _read(payload, shortcut=True, monkeypatch=monkeypatch) == _read(
        payload, shortcut=False, monkeypatch=monkeypatch
    )


@pytest.mark.parametrize("payload", REFUSED)
def test_anything_else_goes_to_the_scanner(payload: str) -> None:
    assert lone_json(payload) is None
