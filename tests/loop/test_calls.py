"""The per-call bookkeeping of a step (`agent.loop._calls`): what makes two calls the same, the
ids given to calls, and running calls without a deadline."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.llama3 import ToolCall
from agent.loop import Limits
from agent.loop._calls import Ledger, Slot, call_key, check, execute, with_ids
from agent.toolkit import RunContext, Toolbox, tool


def _old_key(arguments: Any) -> str:
    """The key the ledger used before it had a fast route: the meaning to keep."""
    return json.dumps(arguments, sort_keys=True, default=repr)


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


_ODD = [
    (1, 2),
    [1, 2],
    Colour.RED,
    Level.ONE,
    1,
    "1",
    "<Colour.RED: 1>",
    Text("a"),
    "a",
    uuid.UUID(int=1),
    "00000000-0000-0000-0000-000000000001",
    datetime.date(2024, 1, 2),
    "2024-01-02",
    Decimal("1.5"),
    1.5,
    "Decimal('1.5')",
    float("nan"),
    float("inf"),
    None,
    2**64,
    2**64 + 1,
    -(2**63) - 1,
    "\ud800",
    "\udc00x",
    Point(1),
    {"x": 1},
    OrderedDict(b=1, a=2),
    {1: "a", 2: "b"},
    {"1": "a", "2": "b"},
    {1: 0, 2: 0, 10: 0},
    {"1": 0, "2": 0, "10": 0},
    {True: 1},
    {"true": 1},
    {None: 1},
    {"null": 1},
    {1.5: 1},
    {"1.5": 1},
    -0.0,
    0.0,
    0,
    True,
    1.0,
    1e16,
    10**16,
    "é",
    "\\u00e9",
    {1, 2},
    "{1, 2}",
]


def _pairs() -> list[tuple[Any, Any]]:
    values = [{"v": v} for v in _ODD] + [{"v": [v, v]} for v in _ODD[:20]]
    return [(a, b) for a in values for b in values]


def test_same_key_exactly_when_json_dumps_wrote_the_same() -> None:
    for a, b in _pairs():
        assert (call_key(a) == call_key(b)) is (_old_key(a) == _old_key(b)), (a, b)


def test_a_key_json_dumps_cannot_write_fails_as_it_did() -> None:
    with pytest.raises(TypeError):
        call_key({"v": {1: "a", "b": 2}})  # json.dumps cannot sort mixed keys
    with pytest.raises(TypeError):
        _old_key({"v": {1: "a", "b": 2}})


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_ANY = st.recursive(
    _JSON | st.sampled_from(_ODD[:25]) | st.tuples(st.integers(0, 2)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=2) | st.integers(0, 3).map(str), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(a=_ANY, b=_ANY)
def test_keys_agree_with_json_dumps_on_drawn_values(a: Any, b: Any) -> None:
    assert (call_key(a) == call_key(b)) is (_old_key(a) == _old_key(b))


@settings(max_examples=300, deadline=None)
@given(value=_JSON)
def test_a_plain_value_and_its_json_round_trip_share_a_key(value: Any) -> None:
    assert call_key(value) == call_key(json.loads(json.dumps(value)))


def test_the_ledger_counts_calls_with_the_same_arguments() -> None:
    ledger = Ledger(Limits())
    assert ledger.repeat("add", {"a": 1, "b": 2}) == 1
    assert ledger.repeat("add", {"b": 2, "a": 1}) == 2
    assert ledger.repeat("add", {"a": 1, "b": 2.0}) == 1
    assert ledger.repeat("sub", {"a": 1, "b": 2}) == 1
    assert ledger.repeat("add", {"a": (1,), "b": 2}) == 1
    assert ledger.repeat("add", {"a": [1], "b": 2}) == 2


def test_calls_without_an_id_get_one_and_keep_the_rest() -> None:
    calls = (
        ToolCall(name="a", arguments={"x": 1}),
        ToolCall(name="b", arguments={}, id="given"),
        ToolCall(name="c", arguments={"y": [2]}),
    )
    got = with_ids(calls, run_id="0123456789abcdef", step=3)
    assert got == (
        ToolCall(name="a", arguments={"x": 1}, id="call_01234567_3_0"),
        calls[1],
        ToolCall(name="c", arguments={"y": [2]}, id="call_01234567_3_2"),
    )
    assert got[1] is calls[1]
    assert got[2].arguments is calls[2].arguments


@tool
async def double(n: int) -> int:
    """Double a number.

    Args:
        n: The number.
    """
    return 2 * n


class _NoTrace:
    recording = False

    def tool(self, slot: Slot) -> Any:
        return _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.anyio
@pytest.mark.parametrize("deadline", [math.inf, 1e9])
@pytest.mark.parametrize("count", [0, 1, 2])
async def test_calls_run_the_same_with_or_without_a_deadline(deadline: float, count: int) -> None:
    calls = with_ids(
        [ToolCall(name="double", arguments={"n": i}) for i in range(count)], run_id="r", step=1
    )
    slots, _ = check(
        calls,
        (),
        step=1,
        run_id="r",
        toolbox=Toolbox([double]),
        ledger=Ledger(Limits()),
        max_repeats=0,
    )
    context: RunContext[None] = RunContext(deps=None, run_id="r", step=1)
    in_time = await execute(slots, context=context, deadline=deadline, trace=_NoTrace())  # type: ignore[arg-type]
    assert in_time is True
    assert [s.result.text if s.result else None for s in slots] == [
        str(2 * i) for i in range(count)
    ]
    assert [s.elapsed for s in slots] == [0.0] * count


def test_a_key_holds_no_more_memory_than_its_text() -> None:
    """A run keeps one key per call: orjson's bytes kept its 4 KiB buffer (1,000 runs of five
    calls held 20 MB more at their peak)."""
    import tracemalloc

    tracemalloc.start()
    try:
        keys = [call_key({"a": i, "b": 1}) for i in range(2000)]
        held = tracemalloc.get_traced_memory()[0] / len(keys)
    finally:
        tracemalloc.stop()
    assert held < 200, f"{held:.0f} bytes per key"
