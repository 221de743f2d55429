"""`stored_at_once`: the hot path's frozen dataclasses get an `__init__` that stores the fields
at once, with the same signature, defaults, errors and values as the one dataclasses generates."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

import pytest

from agent._frozen import stored_at_once
from agent.backends import Done, TextChunk, Usage
from agent.llama3 import MalformedCall, Message, ParsedCompletion, ToolCall
from agent.loop._events import Event
from agent.toolkit import BoundCall, RunContext, ToolResult

FAST: list[type[Any]] = [
    *typing.get_args(Event),
    Done,
    TextChunk,
    Usage,
    MalformedCall,
    Message,
    ParsedCompletion,
    ToolCall,
    BoundCall,
    RunContext,
    ToolResult,
]


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
    for name, value in vars(cls).items():  # methods and properties (a __post_init__ too)
        wanted = not name.startswith("__") or name == "__post_init__"
        if wanted and (callable(value) or isinstance(value, property)):
            namespace.setdefault(name, value)
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


def _fields(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if k != "pending"}  # a fresh object each


def test_each_class_is_made_fast() -> None:
    for cls in FAST:
        assert cls.__init__.__code__.co_filename == "<string>", cls
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
def test_the_signature_is_the_generated_one(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(twin))
    assert cls.__init__.__kwdefaults__ == twin.__init__.__kwdefaults__


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
def test_an_object_holds_what_the_generated_init_stores(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    given = _sample(cls)
    made, plain = cls(**given), twin(**given)
    assert _fields(made) == _fields(plain)
    assert list(vars(made)) == list(vars(plain))  # the same order
    assert repr(made) == repr(plain)
    assert made == cls(**given)
    assert dataclasses.replace(made) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, dataclasses.fields(cls)[0].name, "other")


@pytest.mark.parametrize("cls", FAST, ids=lambda c: c.__name__)
def test_wrong_calls_fail_with_the_generated_messages(cls: type[Any]) -> None:
    twin = _plain_twin(cls)
    given = _sample(cls)
    calls = [lambda c: c(1, **given), lambda c: c(**given, nope=1)]
    if given:
        calls.append(lambda c: c(**dict(list(given.items())[1:])))
    for call in calls:
        with pytest.raises(TypeError) as ours:
            call(cls)
        with pytest.raises(TypeError) as theirs:
            call(twin)
        assert str(ours.value) == str(theirs.value)


def test_post_init_runs_after_the_fields_are_stored() -> None:
    @stored_at_once
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Sized:
        items: tuple[int, ...] = ()
        size: int = dataclasses.field(init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "size", len(self.items))

    assert Sized(items=(1, 2)).size == 2
    assert Sized().size == 0


def test_a_default_factory_makes_one_value_per_object() -> None:
    @stored_at_once
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Bag:
        items: list[int] = dataclasses.field(default_factory=list)

    first, second = Bag(), Bag()
    assert first.items == []
    assert first.items is not second.items
    given = [1]
    assert Bag(items=given).items is given


def test_what_it_cannot_make_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Positional:
        a: int

    with pytest.raises(TypeError, match="keyword-only"):
        stored_at_once(Positional)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int]

        def __post_init__(self, b: int) -> None:
            pass

    with pytest.raises(TypeError, match="InitVar"):
        stored_at_once(WithInitVar)
