"""Hostile tools: whatever a tool raises, swallows or blocks, the run ends on time, reports
what happened, and leaves no thread or task behind once the tool lets go (issue 14, 5-7, 14)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import pytest

from agent import Limits, RunResult, Tool, tool
from agent.errors import InvalidArgumentsError
from agent.loop import ToolCallFinished, event_to_dict
from agent.testing import Script, ScriptRequest
from agent.toolkit import _execute as abandon
from agent.toolkit import abandoned_calls, set_abandoned_limit
from tests.loop.helpers import by_results, call, running

pytestmark = pytest.mark.anyio

PROMPT = 10.0  # generous waits on a loaded machine; a hang waits this long and fails


@pytest.fixture(autouse=True)
def _nothing_left() -> Iterator[None]:
    """Each test releases what it abandoned; the counts are back to zero after it."""
    yield
    deadline = time.monotonic() + PROMPT
    while abandoned_calls() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert abandoned_calls() == {}


def once(name: str, reply: str = "Done.", **arguments: object) -> Script:
    """A script: call `name` once, then answer."""
    return by_results(lambda results: call(name, **arguments) if not results else reply)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (what it watches is set by other threads: no Event)."""
    with anyio.fail_after(PROMPT):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


# --- 5. anything a tool raises is the call's error --------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_system_exit_in_a_tool_is_the_calls_error(kind: str) -> None:
    def leave() -> str:
        raise SystemExit(3)

    async def leave_async() -> str:
        raise SystemExit(3)

    quits = tool(leave if kind == "sync" else leave_async, name="quits", description="Quit.")
    async with running(once("quits"), tools=[quits]) as (_, agent):
        result = await agent.run("Go.")
    assert result.status == "answered"
    assert result.messages[-2].content == "quits failed: SystemExit: 3"


async def test_a_tool_raising_cancellation_by_itself_is_its_error() -> None:
    @tool
    async def odd() -> str:
        """Raise a cancellation nobody asked for."""
        raise asyncio.CancelledError

    async with running(once("odd"), tools=[odd]) as (_, agent):
        result = await agent.run("Go.")
    assert result.status == "answered"
    assert result.messages[-2].content == "odd failed: CancelledError"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_keyboard_interrupt_still_goes_through(kind: str) -> None:
    def stop() -> str:
        raise KeyboardInterrupt

    async def stop_async() -> str:
        raise KeyboardInterrupt

    ctrl_c = tool(stop if kind == "sync" else stop_async, name="ctrl_c", description="Stop.")
    with pytest.raises(KeyboardInterrupt):
        await ctrl_c.execute(ctrl_c.validate({}))


# --- 6. an async tool that swallows its cancellation ------------------------------------------


def _stubborn(release: threading.Event, started: threading.Event | None = None) -> Tool:
    @tool(timeout=0.2)
    async def stubborn() -> str:
        """Ignore every cancellation until released."""
        if started is not None:
            started.set()
        while not release.is_set():
            with contextlib.suppress(BaseException):  # the hostile part
                await anyio.sleep(0.02)
        return "finally"

    return stubborn


async def test_its_timeout_holds_and_it_is_reported_abandoned() -> None:
    release = threading.Event()
    try:
        async with running(once("stubborn"), tools=[_stubborn(release)]) as (_, agent):
            began = time.monotonic()
            result = await agent.run("Go.")
        assert time.monotonic() - began < 0.2 + abandon.ABANDON_AFTER + 2
        assert result.status == "answered"
        assert result.messages[-2].content == (
            "stubborn timed out after 0.2 s; it ignored being stopped and was abandoned"
        )
        assert abandoned_calls() == {"stubborn": 1}
    finally:
        release.set()


async def test_the_runs_deadline_holds_and_it_is_reported_abandoned() -> None:
    release = threading.Event()

    @tool(timeout=60)
    async def stubborn() -> str:
        """Ignore every cancellation until released."""
        while not release.is_set():
            with contextlib.suppress(BaseException):  # the hostile part
                await anyio.sleep(0.02)
        return "finally"

    try:
        async with running(once("stubborn"), tools=[stubborn], limits=Limits(run_timeout=0.5)) as (
            _,
            agent,
        ):
            began = time.monotonic()
            stream = agent.stream("Go.")
            async with stream:
                events = [event async for event in stream]
        assert time.monotonic() - began < 0.5 + abandon.ABANDON_AFTER + 2
        assert stream.result.status == "timeout"
        finished = [e for e in events if isinstance(e, ToolCallFinished)]
        assert finished[0].result == (
            "Error: stubborn did not finish before the run's time limit; it ignored being "
            "stopped and was abandoned."
        )
    finally:
        release.set()


async def test_an_outer_cancel_holds_and_it_is_reported_abandoned() -> None:
    release, started = threading.Event(), threading.Event()
    try:
        async with running(once("stubborn"), tools=[_stubborn(release, started)]) as (_, agent):
            stream = agent.stream("Go.")
            async with anyio.create_task_group() as group:

                async def cancel_once_it_runs() -> None:
                    await anyio.to_thread.run_sync(started.wait, PROMPT)
                    group.cancel_scope.cancel()  # before the tool's own 0.2 s timeout

                group.start_soon(cancel_once_it_runs)
                async with stream:
                    async for _ in stream:
                        pass
            began = time.monotonic()  # the cancel is within ms of the tool starting
        assert time.monotonic() - began < abandon.ABANDON_AFTER + 2
        assert stream.result.status == "cancelled"
        assert stream.result.messages[-1].content == (
            "Error: the run was cancelled before stubborn finished; stubborn was abandoned."
        )
    finally:
        release.set()


async def test_a_released_tool_leaves_no_task() -> None:
    release = threading.Event()
    async with running(once("stubborn"), tools=[_stubborn(release)]) as (_, agent):
        await agent.run("Go.")
        assert len(abandon._tasks) == 1
        release.set()
        await _until(lambda: not abandon._tasks)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("tool ")] == []


# --- 7. hung sync tools: abandoned threads are capped ------------------------------------------


async def test_hung_threads_are_capped_and_the_tool_refused_past_the_cap() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def hangs(n: int) -> str:
        """Hang until released.

        Args:
            n: A number, so each call differs.
        """
        release.wait(PROMPT * 3)
        return "late"

    before = threading.active_count()
    set_abandoned_limit(per_tool=3, total=5)
    try:
        results = [await hangs.execute(hangs.validate({"n": n})) for n in range(30)]
        texts = [r.text for r in results]
        assert texts[:3] == ["hangs timed out after 0.05 s"] * 3
        assert texts[3] == (
            "hangs is unavailable: 3 earlier calls of hangs are still running after their time "
            "limit (at most 3 per tool and 5 in all may be left running). Do not call hangs "
            "again now: answer with what you have, or use another tool."
        )
        assert len(set(texts[3:])) == 1
        assert abandoned_calls() == {"hangs": 3}
        assert threading.active_count() - before <= 3
    finally:
        release.set()
        set_abandoned_limit(
            per_tool=abandon.DEFAULT_ABANDONED_PER_TOOL, total=abandon.DEFAULT_ABANDONED_TOTAL
        )
    await _until(lambda: not abandoned_calls())
    # Once they returned, the tool is called again.
    assert (await hangs.execute(hangs.validate({"n": 0}))).text == "late"


async def test_the_process_cap_refuses_other_tools_too() -> None:
    release = threading.Event()

    def make(name: str) -> Tool:
        def body() -> str:
            release.wait(PROMPT * 3)
            return "late"

        return tool(body, name=name, description="Hang.", timeout=0.05)

    first, second, third = make("first"), make("second"), make("third")
    set_abandoned_limit(per_tool=2, total=3)
    try:
        for hung in (first, first, second):
            await hung.execute(hung.validate({}))
        refused = await third.execute(third.validate({}))
        assert refused.is_error
        assert refused.text.startswith("third is unavailable: 3 earlier tool calls are still")
    finally:
        release.set()
        set_abandoned_limit(
            per_tool=abandon.DEFAULT_ABANDONED_PER_TOOL, total=abandon.DEFAULT_ABANDONED_TOTAL
        )


async def test_a_blocked_loop_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(abandon, "BLOCKED_LOOP_WARNING", 0.1)

    @tool
    async def blocker() -> str:
        """Block the event loop."""
        time.sleep(0.4)  # noqa: ASYNC251 - the hostile part
        return "done"

    with caplog.at_level(logging.WARNING, logger="agent.tools"):
        result = await blocker.execute(blocker.validate({}))
    assert result.text == "done"
    lines = [r.getMessage() for r in caplog.records]
    # The watchdog names it while it blocks, and the step's end says for how long.
    assert any(line.startswith("tool blocker has blocked the event loop for") for line in lines)
    assert any(line.startswith("tool blocker blocked the event loop for 0.") for line in lines)


# --- 14. numbers JSON has not ------------------------------------------------------------------


@tool
def square(x: float) -> float:
    """Square a number.

    Args:
        x: The number.
    """
    return x * x


@pytest.mark.parametrize(("written", "shown"), [("1e999", "Infinity"), ("-1e999", "-Infinity")])
async def test_an_infinite_argument_is_invalid_and_the_result_stays_json(
    written: str, shown: str
) -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return "Done."
        return '<|python_tag|>{"name": "square", "parameters": {"x": ' + written + "}}<|eom_id|>"

    async with running(script, tools=[square]) as (_, agent):
        stream = agent.stream("Go.")
        async with stream:
            events = [event_to_dict(event) async for event in stream]
    result: RunResult = stream.result
    for event in events:  # --json lines: every event JSON too
        json.dumps(event, allow_nan=False)
    assert result.messages[-2].content.startswith(
        "Error: invalid arguments for square:\n"
        f"square: argument 'x' must be a finite number, got {shown}"
    )
    text = json.dumps(result.to_dict(), allow_nan=False)  # raises on Infinity or NaN
    assert f'"x": "{shown}"' in text


async def test_nested_non_finite_numbers_are_invalid_too() -> None:
    @tool
    def total(values: list[float]) -> float:
        """Add numbers.

        Args:
            values: The numbers.
        """
        return sum(values)

    with pytest.raises(
        InvalidArgumentsError, match=r"argument 'values\[1\]' must be a finite number, got NaN"
    ):
        total.validate({"values": [1.0, float("nan")]})
