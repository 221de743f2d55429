"""A run record holds what replays the run exactly: rendering its messages up to each assistant
turn gives the prompt that step sent, byte for byte, whatever format the server picked."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest

from agent import Agent, tool
from agent.batch import RECORD_VERSION, RunRecord, Verdict
from agent.errors import DeveloperError
from agent.llama3 import BEGIN_OF_TEXT, render_prompt
from agent.testing import EmulatedModel, OllamaEmulator, call_tool, sequence

pytestmark = pytest.mark.anyio

TODAY = datetime.date(2024, 9, 21)
STARTED = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _replayed_prompts(record: RunRecord) -> list[str]:
    """The prompt before each assistant turn, rendered from the record alone (its JSON)."""
    data = orjson.loads(record.to_json())
    render = data["render"]
    messages = data["messages"]
    return [
        render_prompt(
            messages[:index],
            render["tools"],
            model=render["model"],
            today=datetime.date.fromisoformat(data["today"]),
            tool_format=render["tool_format"],
            tool_choice=render["tool_choice"],
        )
        for index, message in enumerate(messages)
        if message["role"] == "assistant"
    ]


async def _record(emu: OllamaEmulator, model: str, **options: Any) -> RunRecord:
    async with Agent(model, host=emu.url, tools=[add], system="Be brief.", **options) as agent:
        result = await agent.run("What is 1 + 2?")
        return RunRecord.from_result(
            result,
            agent=agent,
            id="t-1",
            task="What is 1 + 2?",
            metadata={"source": "unit"},
            check=Verdict(passed=True, expected="3"),
            started=STARTED,
            seconds=0.25,
        )


@pytest.mark.parametrize(
    ("model", "family", "reply"),
    [
        ("llama3.1", "3.1", None),
        # A custom name the server reports as 3.2: the record must say 3.2, not the name's 3.1.
        ("myassistant", "3.2", "[add(a=1, b=2)]"),
    ],
)
async def test_rendering_the_record_gives_every_prompt_the_run_sent(
    model: str, family: str, reply: str | None
) -> None:
    script = call_tool("add", {"a": 1, "b": 2}, then="3") if reply is None else None
    models = [EmulatedModel.llama(model, family=family)]
    async with OllamaEmulator(script or sequence(reply or "", "3<|eot_id|>"), models=models) as emu:
        record = await _record(emu, model, today=TODAY)
    sent = [BEGIN_OF_TEXT + (r.prompt or "") for r in emu.completions]
    assert record.status == "answered"
    assert record.steps == 2
    assert len(sent) == 2
    assert _replayed_prompts(record) == sent
    assert record.family == family
    assert record.render["model"] == f"llama{family}"


async def test_the_line_round_trips_and_says_what_the_contract_says() -> None:
    async with OllamaEmulator(call_tool("add", {"a": 1, "b": 2}, then="3")) as emu:
        record = await _record(emu, "llama3.1")
    line = record.to_json()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    data = orjson.loads(line)
    assert list(data) == [
        "id", "task", "status", "ok", "answer", "error", "steps", "usage", "timing", "check",
        "metadata", "model", "today", "family", "render", "messages", "record_version",
    ]  # fmt: skip
    assert data["ok"] is True
    assert data["answer"] == "3"
    assert data["timing"] == {"started": "2026-01-02T03:04:05Z", "seconds": 0.25}
    assert data["check"] == {"passed": True, "expected": "3", "reason": None}
    assert data["metadata"] == {"source": "unit"}
    assert data["today"] == datetime.date.today().isoformat()  # no pinned date: the run's own
    assert data["render"]["tools"][0]["name"] == "add"
    assert data["render"]["tool_format"] == "json"
    assert data["usage"]["total"]["eval_count"] > 0
    assert data["record_version"] == RECORD_VERSION
    back = RunRecord.from_json(line)
    assert back == record
    assert back.to_json() == line
    assert back.started == STARTED
    assert back.seconds == 0.25
    assert (
        back.tokens
        == data["usage"]["total"]["prompt_eval_count"] + data["usage"]["total"]["eval_count"]
    )
    assert [m.role for m in back.to_messages()] == ["system", "user", "assistant", "tool",
                                                    "assistant"]  # fmt: skip
    assert [s.name for s in back.tool_specs()] == ["add"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"{not json", "not a JSON line"),
        (b"[1, 2]", "a run record is a JSON object"),
        (b'{"record_version": 99}', "record_version 99 is not 1"),
        (b'{"record_version": 1, "id": "a"}', "missing ok, status, task"),
        (
            b'{"record_version": 1, "id": 1.5, "task": "t", "status": "answered", "ok": true}',
            "id must be a string or an integer",
        ),
        (
            b'{"record_version": 1, "id": true, "task": "t", "status": "answered", "ok": true}',
            "id must be a string or an integer",
        ),
        (
            b'{"record_version": 1, "id": 1, "task": "t", "status": "won", "ok": true}',
            "unknown status 'won'",
        ),
    ],
)
def test_a_line_that_is_not_a_record_is_refused_saying_why(line: bytes, says: str) -> None:
    with pytest.raises(DeveloperError, match=says):
        RunRecord.from_json(line)


def test_a_naive_start_time_is_refused() -> None:
    from agent.loop import RunResult

    result = RunResult(answer="", messages=(), status="error", error="boom")
    with pytest.raises(DeveloperError, match="aware datetime"):
        RunRecord.from_result(
            result,
            agent=Agent("llama3.1"),
            id=1,
            task="t",
            metadata=None,
            check=None,
            started=datetime.datetime(2026, 1, 1),  # naive: the point of the test
            seconds=0.0,
        )
