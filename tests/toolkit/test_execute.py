"""Execution: results as text, errors as results, deadlines, cancellation, threads, context."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from agent.errors import DeveloperError, InvalidArgumentsError, ToolExecutionError
from agent.toolkit import (
    BoundCall,
    RunContext,
    Tool,
    ToolResult,
    set_thread_limit,
    tool,
    tool_thread_limiter,
)
from agent.toolkit._execute import DEFAULT_THREAD_LIMIT

pytestmark = pytest.mark.anyio

# Generous: on a loaded 2-core machine a thread or task may take a while to be scheduled, but a
# call that blocks for real waits for 30 s.
PROMPT = 10.0


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Pair:
    left: str
    right: list[int]


class Opaque:
    def __str__(self) -> str:
        return "opaque thing"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


async def run(t: Tool[..., Any], arguments: dict[str, Any], **kwargs: Any) -> ToolResult:
    return await t.execute(t.validate(arguments), **kwargs)


# --- results ------------------------------------------------------------------------------


@tool
def echo(kind: str) -> Any:
    return {
        "str": "  as is <|eot_id|>\n",
        "int": 42,
        "float": 2.5,
        "bool": True,
        "none": None,
        "dict": {"a": 1, "b": [1, 2], "é": "ü"},
        "list": [1, "two", None],
        "tuple": (1, 2),
        "model": Point(x=1, y=2),
        "dataclass": Pair(left="l", right=[1]),
        "nested": {"p": Point(x=0, y=0), "when": datetime.date(2024, 1, 2)},
        "object": Opaque(),
        "objects": [Opaque()],
    }[kind]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("str", "  as is <|eot_id|>\n"),  # neutralizing is the renderer's job
        ("int", "42"),
        ("float", "2.5"),
        ("bool", "true"),
        ("none", "null"),
        ("dict", '{"a":1,"b":[1,2],"é":"ü"}'),
        ("list", '[1,"two",null]'),
        ("tuple", "[1,2]"),
        ("model", '{"x":1,"y":2}'),
        ("dataclass", '{"left":"l","right":[1]}'),
        ("nested", '{"p":{"x":0,"y":0},"when":"2024-01-02"}'),
        ("object", "opaque thing"),
        ("objects", '["opaque thing"]'),
    ],
)
async def test_results_become_text(kind: str, text: str) -> None:
    result = await run(echo, {"kind": kind})
    assert result == ToolResult(text=text, duration=result.duration)
    assert result.duration > 0


async def test_sync_and_async_tools_and_python_values() -> None:
    @tool
    def area(p: Point, scale: int = 1) -> int:
        return p.x * p.y * scale

    @tool
    async def shift(p: Point, by: int) -> Point:
        await anyio.lowlevel.checkpoint()
        return Point(x=p.x + by, y=p.y + by)

    assert (await run(area, {"p": {"x": 2, "y": "3"}})).text == "6"
    assert (await run(shift, {"p": {"x": 1, "y": 2}, "by": 1})).text == '{"x":2,"y":3}'
    assert area.is_async is False
    assert shift.is_async is True


async def test_tools_stay_callable_like_the_function() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    async def twice(x: int) -> int:
        return 2 * x

    assert add(1, 2) == 3
    assert add(a=1, b=2) == 3
    assert await twice(4) == 8
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two integers."


async def test_positional_only_and_keyword_only_parameters() -> None:
    @tool
    def kinds(a: int, b: int = 10, /, c: int = 100, *, d: int = 1000) -> int:
        return a + b + c + d

    assert (await run(kinds, {"a": 1})).text == "1111"
    assert (await run(kinds, {"a": 1, "d": 2, "b": 3})).text == "106"


async def test_a_call_built_by_hand_is_converted_and_checked() -> None:
    @tool
    def area(p: Point) -> int:
        return p.x * p.y

    ok = await area.execute(BoundCall(tool=area, arguments={"p": {"x": 2, "y": 4}}))
    assert ok.text == "8"
    bad = await area.execute(BoundCall(tool=area, arguments={"p": {"x": "two", "y": 4}}))
    assert bad.is_error
    assert bad.text == """area: argument 'p.x' must be an integer, got "two\""""
    assert isinstance(bad.exception, InvalidArgumentsError)


async def test_a_call_validated_by_another_tool_is_refused() -> None:
    call = echo.validate({"kind": "int"})

    @tool
    def other(kind: str) -> str:
        return kind

    result = await other.execute(call)
    assert result.is_error
    assert "validated by tool 'echo', not 'other'" in result.text


# --- errors -------------------------------------------------------------------------------


async def test_an_exception_becomes_an_error_result_with_the_traceback_kept() -> None:
    @tool
    def divide(a: float, b: float) -> float:
        return a / b

    result = await run(divide, {"a": 1, "b": 0})
    assert result.is_error
    assert result.text == "divide failed: ZeroDivisionError: float division by zero"
    assert isinstance(result.exception, ZeroDivisionError)
    assert result.traceback is not None
    assert "Traceback" not in result.text
    assert "return a / b" in result.traceback


async def test_async_exceptions_and_messages_meant_for_the_model() -> None:
    @tool
    async def search(query: str) -> str:
        if query == "empty":
            raise ValueError()
        raise ToolExecutionError("no results; try a broader query")

    spoken = await run(search, {"query": "x"})
    assert spoken.text == "search failed: no results; try a broader query"
    assert isinstance(spoken.exception, ToolExecutionError)
    bare = await run(search, {"query": "empty"})
    assert bare.text == "search failed: ValueError"


async def test_a_result_that_cannot_become_text_is_an_error() -> None:
    @tool
    def weird() -> Unprintable:
        return Unprintable()

    result = await run(weird, {})
    assert result.is_error
    assert isinstance(result.exception, RuntimeError)
    assert result.text == "weird failed: its result cannot be shown as text (RuntimeError)"


# --- logging: one line per failure, the traceback at DEBUG --------------------------------------


async def test_a_failure_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    @tool
    def divide(a: float, b: float) -> float:
        return a / b

    with caplog.at_level(logging.WARNING, logger="agent.tools"):
        result = await run(divide, {"a": 1, "b": 0})
    [record] = caplog.records
    assert (record.name, record.levelno) == ("agent.tools", logging.WARNING)
    assert record.getMessage() == "tool divide failed: ZeroDivisionError: float division by zero"
    assert record.exc_info is None
    assert "return a / b" not in caplog.text  # no traceback on the terminal
    assert caplog.text.count("\n") == 1
    assert result.text == "divide failed: ZeroDivisionError: float division by zero"
    assert result.traceback is not None
    assert "return a / b" in result.traceback


async def test_the_traceback_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    @tool
    def search(query: str) -> str:
        raise ConnectionError("no network:\n  name resolution failed")

    with caplog.at_level(logging.DEBUG, logger="agent.tools"):
        result = await run(search, {"query": "llama"})
    warning, debug = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is None
    assert warning.getMessage() == (
        "tool search failed: ConnectionError: no network: name resolution failed"
    )
    assert debug.levelno == logging.DEBUG
    assert debug.getMessage() == "tool search failed"
    assert debug.exc_info is not None
    assert debug.exc_info[1] is result.exception
    assert "raise ConnectionError" in caplog.text  # the traceback reaches a DEBUG log
    assert result.is_error
    assert result.text.startswith("search failed: ConnectionError: no network")


async def test_timeouts_are_logged_without_changing_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool(timeout=0.05)
    async def slow() -> str:
        await anyio.sleep(30)
        return ""

    with caplog.at_level(logging.WARNING, logger="agent.tools"), anyio.fail_after(PROMPT):
        result = await run(slow, {})
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "tool slow timed out after 0.05 s",
    )
    assert result.text == "slow timed out after 0.05 s"


async def test_a_result_that_cannot_become_text_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    @tool
    def weird() -> Unprintable:
        return Unprintable()

    with caplog.at_level(logging.DEBUG, logger="agent.tools"):
        await run(weird, {})
    warning, debug = caplog.records
    assert warning.getMessage().startswith("tool weird: its result cannot be shown as text: ")
    assert warning.exc_info is None
    assert debug.exc_info is not None


async def test_successes_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="agent.tools"):
        assert not (await run(echo, {"kind": "int"})).is_error
    assert caplog.records == []


# --- truncation ---------------------------------------------------------------------------


async def test_output_is_capped_with_a_visible_marker() -> None:
    @tool(max_output=1000)
    def big(n: int) -> str:
        return "x" * n

    result = await run(big, {"n": 20_000})
    assert result.truncated
    assert not result.is_error
    assert len(result.text) <= 1000
    marker = "\n[truncated: 19,045 of 20,000 characters cut]"
    assert result.text == "x" * (1000 - len(marker)) + marker
    exact = await run(big, {"n": 1000})
    assert exact.text == "x" * 1000
    assert not exact.truncated


async def test_default_cap_is_16000_and_errors_are_capped_too() -> None:
    @tool
    def loud(n: int) -> str:
        raise ValueError("e" * n)

    assert loud.max_output == 16_000
    result = await run(loud, {"n": 50_000})
    assert result.is_error
    assert result.truncated
    assert len(result.text) <= 16_000
    assert result.text.startswith("loud failed: ValueError: eee")
    assert result.text.endswith("of 50,025 characters cut]")


# --- context ------------------------------------------------------------------------------


async def test_the_run_context_is_injected() -> None:
    seen: list[RunContext[dict[str, str]]] = []

    @tool
    async def whoami(ctx: RunContext[dict[str, str]], greeting: str) -> str:
        seen.append(ctx)
        return f"{greeting}, {ctx.deps['user']}"

    context = RunContext(deps={"user": "ada"}, run_id="r1", step=2)
    result = await run(whoami, {"greeting": "hi"}, context=context)
    assert result.text == "hi, ada"
    assert seen == [context]
    assert seen[0] is context
    with pytest.raises(InvalidArgumentsError):
        whoami.validate({"greeting": "hi", "ctx": {}})  # the model cannot pass it


async def test_a_sync_tool_gets_the_context_too_and_a_missing_one_is_an_error() -> None:
    @tool
    def user(ctx: RunContext[str], /) -> str:
        return ctx.deps

    assert (await run(user, {}, context=RunContext(deps="bob"))).text == "bob"
    missing = await run(user, {})
    assert missing.is_error
    assert isinstance(missing.exception, ToolExecutionError)
    assert "needs a RunContext" in missing.text


async def test_an_optional_context_may_be_left_out() -> None:
    @tool
    def maybe(x: int, ctx: RunContext[str] | None = None) -> str:
        return f"{x}:{ctx.deps if ctx else '-'}"

    assert (await run(maybe, {"x": 1})).text == "1:-"
    assert (await run(maybe, {"x": 1}, context=RunContext(deps="d"))).text == "1:d"


# --- deadlines and cancellation -----------------------------------------------------------


async def test_an_async_tool_past_its_timeout_is_cancelled() -> None:
    cancelled = anyio.Event()

    @tool(timeout=0.05)
    async def slow() -> str:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "done"

    with anyio.fail_after(PROMPT):
        result = await run(slow, {})
    assert result.is_error
    assert result.text == "slow timed out after 0.05 s"
    # The errors tree's type for the program, the builtin TimeoutError as its cause.
    assert isinstance(result.exception, ToolExecutionError)
    assert not isinstance(result.exception, TimeoutError)
    assert str(result.exception) == "slow timed out after 0.05 s"
    assert isinstance(result.exception.__cause__, TimeoutError)
    assert result.exception.__suppress_context__
    assert result.traceback is None
    assert cancelled.is_set()


async def test_a_thread_tool_past_its_timeout_is_abandoned() -> None:
    release = threading.Event()
    finished = threading.Event()

    @tool(timeout=0.05)
    def stuck() -> str:
        release.wait(30)
        finished.set()
        return "late"

    try:
        with anyio.fail_after(PROMPT):
            result = await run(stuck, {})
        assert result.is_error
        assert result.text == "stuck timed out after 0.05 s"
        assert not finished.is_set()  # the thread runs on...
    finally:
        release.set()
    await anyio.to_thread.run_sync(finished.wait, 10)
    assert finished.is_set()  # ...until the function returns


async def test_a_thread_tool_can_stop_early_once_abandoned() -> None:
    stopped = threading.Event()

    @tool(timeout=0.05)
    def polite() -> str:
        try:
            for _ in range(3000):
                anyio.from_thread.check_cancelled()
                time.sleep(0.01)
            return "ran to the end"
        finally:
            stopped.set()

    result = await run(polite, {})
    assert result.text == "polite timed out after 0.05 s"
    await anyio.to_thread.run_sync(stopped.wait, PROMPT)
    assert stopped.is_set()


async def test_cancellation_reaches_an_async_tool_and_propagates() -> None:
    started = anyio.Event()
    cleaned_up = anyio.Event()
    after: list[ToolResult] = []

    @tool
    async def waits() -> str:
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            cleaned_up.set()
        return "done"

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                after.append(await run(waits, {}))

            tg.start_soon(call)
            await started.wait()
            tg.cancel_scope.cancel()
    assert cleaned_up.is_set()
    assert after == []  # not turned into a result: the cancellation went through


async def test_a_blocked_thread_tool_does_not_hold_cancellation() -> None:
    started = threading.Event()
    release = threading.Event()

    @tool
    def blocks() -> str:
        started.set()
        release.wait(30)
        return "done"

    try:
        with anyio.fail_after(PROMPT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, blocks, {})
                await anyio.to_thread.run_sync(started.wait, PROMPT)
                tg.cancel_scope.cancel()
    finally:
        release.set()


# --- threads ------------------------------------------------------------------------------


async def test_sync_tools_share_a_capacity_limiter() -> None:
    limiter = anyio.CapacityLimiter(1)
    release = threading.Event()
    first_running = threading.Event()
    started: list[str] = []

    @tool
    def hold(name: str) -> str:
        started.append(name)
        first_running.set()
        release.wait(30)
        return name

    results: list[str] = []

    async def call(name: str) -> None:
        results.append((await run(hold, {"name": name}, limiter=limiter)).text)

    try:
        with anyio.fail_after(PROMPT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "first")
                await anyio.to_thread.run_sync(first_running.wait, PROMPT)
                tg.start_soon(call, "second")
                await anyio.wait_all_tasks_blocked()
                assert limiter.borrowed_tokens == 1
                assert limiter.statistics().tasks_waiting == 1  # the second waits for the slot
                assert started == ["first"]
                release.set()
    finally:
        release.set()
    assert sorted(results) == ["first", "second"]


async def test_set_thread_limit_changes_the_default_limiter() -> None:
    limiter = tool_thread_limiter()
    assert tool_thread_limiter() is limiter
    before = limiter.total_tokens
    try:
        set_thread_limit(3)
        assert limiter.total_tokens == 3
    finally:
        set_thread_limit(int(before))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DeveloperError) as caught:
            set_thread_limit(bad)  # type: ignore[arg-type]
        assert str(caught.value) == (
            f"set_thread_limit({bad!r}): the limit must be an integer of at least 1 (how many "
            "sync tools may run in worker threads at once; default 32); pass a positive integer"
        )
    assert limiter.total_tokens == before  # a refused limit changes nothing


async def test_sync_tools_run_off_the_event_loop_thread() -> None:
    @tool
    def where() -> str:
        return threading.current_thread().name

    assert (await run(where, {})).text != threading.current_thread().name


async def test_duration_covers_the_call() -> None:
    @tool
    async def nap() -> str:
        await anyio.sleep(0.05)
        return ""

    assert (await run(nap, {})).duration >= 0.04  # asyncio may wake a hair early


def test_set_thread_limit_outside_an_event_loop() -> None:
    try:
        set_thread_limit(2)

        async def made() -> float:
            return tool_thread_limiter().total_tokens

        assert anyio.run(made) == 2
    finally:
        set_thread_limit(DEFAULT_THREAD_LIMIT)
