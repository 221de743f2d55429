"""The loop's plain values: limits, usage totals, results and events as JSON."""

import dataclasses
import datetime
import json

import pytest

from agent.backends import Usage
from agent.errors import ConfigError, StreamError
from agent.llama3 import Message, ToolCall
from agent.loop import (
    Limits,
    RunFinished,
    RunResult,
    RunUsage,
    StepFinished,
    ToolCallFinished,
    ToolCallParsed,
    event_to_dict,
    message_to_dict,
)


def test_limits_refuse_nonsense_with_every_problem_named() -> None:
    with pytest.raises(ConfigError) as info:
        Limits(max_steps=0, max_repeats=-1, run_timeout=0)
    assert len(info.value.problems) == 3
    assert "max_steps" in str(info.value)
    assert "run_timeout" in str(info.value)


def test_usage_sums_counts_and_durations_and_keeps_the_largest_context() -> None:
    usage = RunUsage().add(
        Usage(prompt_eval_count=100, eval_count=10, total_duration=5, num_ctx=4096)
    )
    usage = usage.add(Usage(prompt_eval_count=20, eval_count=7, total_duration=3, num_ctx=8192))
    assert usage.total.prompt_eval_count == 120
    assert usage.total.eval_count == 17
    assert usage.total.total_duration == 8
    assert usage.total.num_ctx == 8192
    assert usage.tokens == 137
    assert len(usage.steps) == 2


def test_every_usage_field_adds_up_over_steps() -> None:
    """Each field of `Usage` is summed (num_ctx: the largest), whether the total is made by
    adding a step at a time or from the steps at once (a session loaded from its store)."""
    names = [f.name for f in dataclasses.fields(Usage)]
    first = Usage(**{name: 10 + i for i, name in enumerate(names)})
    second = Usage(**{name: 100 * (i + 1) for i, name in enumerate(names)})
    grown = RunUsage().add(first).add(second)
    for i, name in enumerate(names):
        expected = max(10 + i, 100 * (i + 1)) if name == "num_ctx" else 10 + i + 100 * (i + 1)
        assert getattr(grown.total, name) == expected, name
    assert RunUsage(steps=(first, second)).total == grown.total


def _conversation() -> tuple[Message, ...]:
    call = ToolCall(id="c1", name="add", arguments={"a": 1, "b": [2, 3]})
    return (
        Message(role="system", content="Be brief.", trusted=True),
        Message(role="user", content="add"),
        Message(
            role="assistant",
            tool_calls=(call,),
            stop_reason="end_of_message",
            raw='<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": [2, 3]}}',
        ),
        Message(role="tool", content="6", tool_call_id="c1", name="add"),
        Message(role="assistant", content="6", raw="6"),
    )


def test_messages_round_trip_through_the_neutral_dict_form() -> None:
    for message in _conversation():
        data = json.loads(json.dumps(message_to_dict(message)))
        back = Message.from_dict(data)
        assert back.role == message.role
        assert back.content == message.content
        assert back.raw == message.raw
        assert back.trusted == message.trusted
        assert back.tool_call_id == message.tool_call_id
        assert back.name == message.name
        assert back.stop_reason == message.stop_reason
        assert [(c.id, c.name, dict(c.arguments)) for c in back.tool_calls] == [
            (c.id, c.name, {"a": 1, "b": [2, 3]}) for c in message.tool_calls
        ]


def test_result_to_dict_is_json_and_names_the_error_type() -> None:
    error = StreamError("the stream broke")
    result = RunResult(
        answer="",
        messages=_conversation(),
        status="error",
        usage=RunUsage(steps=(Usage(prompt_eval_count=3),)),
        steps=1,
        error=str(error),
        exception=error,
        today=datetime.date(2024, 9, 21),
        new_from=1,
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "error"
    assert data["error_type"] == "StreamError"
    assert data["today"] == "2024-09-21"
    assert data["usage"]["total"]["prompt_eval_count"] == 3
    assert len(data["messages"]) == 5
    assert result.new_messages == _conversation()[1:]
    assert not result.ok


def test_events_serialize_with_their_type_first() -> None:
    events = [
        ToolCallParsed(step=1, index=0, id="c1", name="add", arguments={"a": (1, 2)}),
        ToolCallFinished(
            step=1,
            index=0,
            id="c1",
            name="add",
            tool="add",
            result="boom",
            is_error=True,
            duration=0.5,
            exception=ValueError("bad"),
        ),
        StepFinished(step=1, usage=Usage(eval_count=4), done_reason="stop", calls=1),
        RunFinished(result=RunResult(answer="hi", messages=(), status="answered")),
    ]
    dicts = [json.loads(json.dumps(event_to_dict(e))) for e in events]
    assert [next(iter(d)) for d in dicts] == ["type"] * 4
    assert [d["type"] for d in dicts] == [
        "tool_call_parsed",
        "tool_call_finished",
        "step_finished",
        "run_finished",
    ]
    assert dicts[0]["arguments"] == {"a": [1, 2]}
    assert dicts[1]["exception"] == "ValueError: bad"
    assert dicts[2]["usage"]["eval_count"] == 4
    assert dicts[3]["result"]["answer"] == "hi"
