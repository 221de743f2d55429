"""The parser's last resort: a bug inside it never raises to the caller, and it is logged."""

from __future__ import annotations

import logging
from typing import NoReturn

import pytest

from agent.llama3 import StreamParser, parse_completion
from agent.llama3._parse import _Machine

TEXT = 'Hi <|python_tag|>{"name": "get_weather", "parameters": {}}<|eom_id|>'


def _bug(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError("parser bug")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agent.llama3" and r.levelno == logging.WARNING]


def test_parse_completion_logs_a_bug_and_returns_the_text(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_Machine, "feed", _bug)
    with caplog.at_level(logging.WARNING, logger="agent.llama3"):
        got = parse_completion(TEXT, tools=["get_weather"])
    assert got.content == 'Hi {"name": "get_weather", "parameters": {}}'
    assert not got.wants_tools
    (record,) = _warnings(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "please report it" in record.getMessage()


def test_stream_parser_logs_a_bug_in_feed_and_in_finish(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parser = StreamParser(tools=["get_weather"])
    assert parser.feed("Hi ") == "Hi"
    monkeypatch.setattr(_Machine, "feed", _bug)
    with caplog.at_level(logging.WARNING, logger="agent.llama3"):
        assert parser.feed(TEXT[3:]) == ""
        got = parser.finish()  # parses the whole text again, which fails the same way
    assert got.content == 'Hi {"name": "get_weather", "parameters": {}}'
    assert len(_warnings(caplog)) == 2
    assert all(r.exc_info is not None for r in _warnings(caplog))


def test_stream_parser_logs_a_bug_in_finish(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parser = StreamParser()
    parser.feed("plain answer")
    monkeypatch.setattr(_Machine, "finish", _bug)
    with caplog.at_level(logging.WARNING, logger="agent.llama3"):
        assert parser.finish().content == "plain answer"
    (record,) = _warnings(caplog)
    assert record.exc_info is not None


def test_a_sound_parse_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="agent.llama3"):
        parse_completion(TEXT, tools=["get_weather"])
    assert caplog.records == []
