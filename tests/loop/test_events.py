"""The events are frozen, keyword-only dataclasses whose `__init__` stores the fields at once:
the same signature, defaults, errors and values as the `__init__` dataclasses generates."""

from __future__ import annotations

import dataclasses
import inspect
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


def _plain_twin(cls: type[Any]) -> type[Any]:
    """The class as `@dataclass(frozen=True, kw_only=True)` alone makes it."""
    namespace: dict[str, Any] = {"__annotations__": {}}
    for f in dataclasses.fields(cls):
        namespace["__annotations__"][f.name] = f.type
        namespace[f.name] = dataclasses.field(
            default=f.default,
            default_factory=f.default_factory,
            init=f.init,
            repr=f.repr,
            compare=f.compare,
        )
    twin = type(cls.__name__, (), namespace)
    twin.__qualname__ = cls.__qualname__
    twin.__module__ = cls.__module__
    return dataclasses.dataclass(frozen=True, kw_only=True)(twin)


def _sample(cls: type[Any]) -> dict[str, Any]:
    values = {"int": 1, "str": "x", "float": 0.5, "bool": True}
    out: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.default is inspect.Parameter.empty:
            out[name] = values.get(str(param.annotation), object())
    return out


def test_every_event_is_made_fast() -> None:
    assert len(EVENTS) == 11
    for cls in EVENTS:
        assert cls.__init__.__code__.co_filename == "<string>"
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
        assert cls.__init__.__module__ == _events.__name__


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: c.__name__)
def test_the_signature_is_the_generated_one(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(twin))
    assert cls.__init__.__kwdefaults__ == twin.__init__.__kwdefaults__


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: c.__name__)
def test_an_event_holds_what_the_generated_init_stores(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    given = _sample(cls)
    event, plain = cls(**given), twin(**given)
    made = {k: v for k, v in vars(event).items() if k != "pending"}
    assert made == {k: v for k, v in vars(plain).items() if k != "pending"}
    assert list(vars(event)) == list(vars(plain))  # the same order
    assert repr(event) == repr(plain)
    assert event == cls(**given)
    assert hash(event) == hash(cls(**given)) if cls.__hash__ else True
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "other"


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: c.__name__)
def test_wrong_calls_fail_with_the_generated_messages(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    given = _sample(cls)
    for call in (
        lambda c: c(1, **given),
        lambda c: c(**given, nope=1),
        lambda c: c(**given, type="x"),
        lambda c: c(**dict(list(given.items())[1:])),
    ):
        with pytest.raises(TypeError) as ours:
            call(cls)
        with pytest.raises(TypeError) as theirs:
            call(twin)
        assert str(ours.value) == str(theirs.value)


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
