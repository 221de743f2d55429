"""The events: frozen, keyword-only dataclasses made fast (`agent._frozen`), and their JSON."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from agent.backends import Usage
from agent.loop import _events
from agent.loop._events import (
    ApprovalRequested,
    Event,
    TextDelta,
    ToolCallFinished,
    event_to_dict,
)
from agent.loop._result import plain_data

EVENTS: list[type[Any]] = list(typing.get_args(Event))


def test_every_event_is_made_fast() -> None:
    # How the fast `__init__` behaves like the generated one: tests/test_frozen.py.
    assert len(EVENTS) == 11
    for cls in EVENTS:
        assert cls.__init__.__code__.co_filename == "<string>"
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
        assert cls.__init__.__module__ == _events.__name__


def test_a_default_factory_makes_one_value_per_event() -> None:
    args: dict[str, Any] = dict(step=1, index=0, id="c", name="f", tool="f", arguments={})
    first, second = ApprovalRequested(**args), ApprovalRequested(**args)
    assert first.pending is not second.pending
    assert first.decision is None
    first.approve()
    assert (first.decision, second.decision) == ("yes", None)


def test_defaults_and_replace() -> None:
    event = ToolCallFinished(
        step=1, index=0, id="c", name="f", tool="f", result="2", is_error=False, duration=0.1
    )
    assert (event.truncated, event.exception, event.traceback) == (False, None, None)
    assert event.type == "tool_call_finished"
    assert dataclasses.replace(event, step=2).step == 2
    assert TextDelta(step=1, text="a") == TextDelta(step=1, text="a")


def _reference_to_dict(event: Any) -> dict[str, Any]:
    """event_to_dict as it was written first: every field read through dataclasses.fields."""
    if isinstance(event, _events.RunFinished):
        return {"type": event.type, "result": event.result.to_dict()}
    data: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if f.name == "pending":
            continue
        value = getattr(event, f.name)
        if isinstance(value, BaseException):
            value = f"{type(value).__name__}: {value}"
        elif isinstance(value, Usage):
            value = dataclasses.asdict(value)
        else:
            value = plain_data(value)
        data[f.name] = value
    return data


class _Text(str):
    pass


_DATA_SAMPLES = [
    TextDelta(step=1, text="hello"),
    TextDelta(step=1, text=_Text("sub")),
    _events.ToolCallValidated(
        step=2,
        index=0,
        id="c",
        name="f",
        tool="f",
        arguments={"a": (1, 2.5), "b": float("nan"), 3: [float("-inf"), None, True]},
        coercions=("argument 'a': \"1\" -> 1",),
    ),
    ToolCallFinished(
        step=1,
        index=0,
        id="c",
        name="f",
        tool="f",
        result="boom",
        is_error=True,
        duration=float("inf"),
        exception=ValueError("bad"),
        traceback="Traceback...",
    ),
    _events.StepFinished(
        step=1, usage=Usage(prompt_eval_count=3), done_reason="stop", warnings=("w",)
    ),
    ApprovalRequested(step=1, index=0, id="c", name="f", tool="f", arguments={"x": 1}),
    _events.CallMalformed(step=1, id="c", text="<|python_tag|>{", reason="cut"),
    _events.RunStarted(run_id="r", model="m", task="t"),
]


@pytest.mark.parametrize("event", _DATA_SAMPLES, ids=lambda e: type(e).__name__)
def test_event_to_dict_is_what_it_was(event: Any) -> None:
    got = event_to_dict(event)
    assert got == _reference_to_dict(event)
    assert list(got) == list(_reference_to_dict(event))
    assert [type(v) for v in got.values()] == [type(v) for v in _reference_to_dict(event).values()]
