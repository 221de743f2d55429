"""Running a call the caller can walk away from: the task keeps the caller's context, exceptions
pass through `await` as they would, and the caps are checked."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from agent.errors import DeveloperError
from agent.toolkit import _execute as abandon
from agent.toolkit import abandoned_calls, set_abandoned_limit, tool

pytestmark = pytest.mark.anyio

user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")


async def test_an_async_tool_runs_in_a_task_that_sees_the_callers_context() -> None:
    @tool
    async def who() -> str:
        """Say who calls."""
        await anyio.lowlevel.checkpoint()
        return user.get()

    user.set("ada")
    assert (await who.execute(who.validate({}))).text == "ada"


async def test_exceptions_thrown_into_the_tool_reach_its_handlers() -> None:
    seen: list[str] = []

    @tool(timeout=0.05)
    async def careful() -> str:
        """Clean up when stopped."""
        try:
            await anyio.sleep(30)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        return "never"

    result = await careful.execute(careful.validate({}))
    assert result.text == "careful timed out after 0.05 s"  # ended in time: not abandoned
    assert seen == ["CancelledError"]
    assert abandoned_calls() == {}


async def test_a_returned_value_passes_through_many_steps() -> None:
    @tool
    async def steps() -> int:
        """Await many times."""
        total = 0
        for i in range(100):
            await anyio.lowlevel.checkpoint()
            total += i
        return total

    assert (await steps.execute(steps.validate({}))).text == "4950"


async def test_a_tool_starts_eagerly_in_its_own_task() -> None:
    """The first step runs before `execute` waits, already as the tool's task: what it sets in
    its context stays there, and `current_task` is not the caller's."""
    caller = asyncio.current_task()
    seen: list[object] = []

    @tool
    async def quick() -> str:
        """Note the task, then wait once."""
        seen.append(asyncio.current_task())
        user.set("tool")
        await anyio.lowlevel.checkpoint()
        seen.append(asyncio.current_task())
        return "done"

    user.set("caller")
    assert (await quick.execute(quick.validate({}))).text == "done"
    assert seen[0] is not None
    assert seen[0] is not caller
    assert seen[1] is seen[0]
    assert user.get() == "caller"


async def test_a_tool_that_cannot_wait_runs_at_once_in_a_context_of_its_own() -> None:
    """No `await` in its code: nothing could stop it before it returns, so it gets no task (no
    scope, no timer); what it sets in its context still stays there."""
    caller = asyncio.current_task()
    seen: list[object] = []

    @tool
    async def quick() -> str:
        """Return at once."""
        seen.append(asyncio.current_task())
        user.set("tool")
        return "done"

    user.set("caller")
    assert (await quick.execute(quick.validate({}))).text == "done"
    assert seen == [caller]
    assert user.get() == "caller"


def test_only_code_without_a_yield_cannot_suspend() -> None:
    async def returns() -> int:
        return 1

    async def waits() -> None:
        await anyio.lowlevel.checkpoint()

    async def iterates(items: Any) -> None:
        async for _ in items:
            pass

    async def enters(manager: Any) -> None:
        async with manager:
            pass

    async def gathers(items: Any) -> list[Any]:
        return [await item for item in items]

    assert abandon.cannot_suspend(returns.__code__)
    for suspends in (waits, iterates, enters, gathers):
        assert not abandon.cannot_suspend(suspends.__code__), suspends.__name__


async def test_a_cancel_scope_opened_in_the_first_step_closes_in_the_task() -> None:
    """A scope entered before the first wait (in the eager step) is exited after it, in the
    task that drives the tool on: both must be the same task for anyio."""

    @tool
    async def scoped() -> str:
        """Wait a little under a deadline of its own."""
        with anyio.move_on_after(30) as scope:
            await anyio.sleep(0.01)
        with anyio.fail_after(30):
            await anyio.lowlevel.checkpoint()
        return f"cancelled={scope.cancelled_caught}"

    assert (await scoped.execute(scoped.validate({}))).text == "cancelled=False"


async def test_a_tool_cancelled_at_its_first_wait_gets_the_cancellation() -> None:
    """Cancelled before its task ever ran: the tool still sees the cancellation where it
    waits, and the caller's cancellation goes on."""
    seen: list[str] = []

    @tool
    async def waiting() -> str:
        """Wait."""
        try:
            await anyio.sleep(30)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        return "never"

    with anyio.CancelScope() as scope:
        scope.cancel()
        await waiting.execute(waiting.validate({}))
    assert scope.cancelled_caught
    assert seen == ["CancelledError"]
    assert abandoned_calls() == {}


async def test_an_error_in_the_first_step_is_the_calls_error() -> None:
    @tool
    async def broken() -> str:
        """Fail at once."""
        raise ValueError("bad input")

    result = await broken.execute(broken.validate({}))
    assert result.is_error
    assert result.text == "broken failed: ValueError: bad input"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_set_abandoned_limit_wants_positive_integers(bad: object) -> None:
    with pytest.raises(DeveloperError, match=r"set_abandoned_limit\(per_tool="):
        set_abandoned_limit(per_tool=bad)  # type: ignore[arg-type]
    with pytest.raises(DeveloperError, match=r"set_abandoned_limit\(total="):
        set_abandoned_limit(total=bad)  # type: ignore[arg-type]
    assert abandon._registry.per_tool == abandon.DEFAULT_ABANDONED_PER_TOOL


# A native `task.cancel()` is delivered once; anyio's cleanup (Process.aclose waits for the process
# unshielded, and kills it only if that wait is cancelled too) counts on cancellation that goes on
# until the task leaves the cancelled scope. Once `run_process` was waiting for its process, the
# one-shot cancel left the tool waiting for the process to exit by itself, and it was abandoned.


async def test_a_subprocess_tool_ends_at_its_timeout_and_is_not_abandoned() -> None:
    @tool(timeout=0.3)
    async def nap() -> str:
        """Run a long subprocess."""
        await anyio.run_process(["sleep", "27.1828"])
        return "slept"

    result = await nap.execute(nap.validate({}))
    assert result.text == "nap timed out after 0.3 s"
    assert abandoned_calls() == {}


async def test_cancelling_the_caller_kills_a_subprocess_the_tool_waits_for() -> None:
    waiting = anyio.Event()
    processes: list[anyio.abc.Process] = []
    abandoned: list[str] = []

    @tool(timeout=120)
    async def nap() -> str:
        """Wait for a long subprocess, as run_process does."""
        async with await anyio.open_process(["sleep", "27.1828"]) as process:
            processes.append(process)
            waiting.set()
            await process.wait()
        return "slept"

    with anyio.fail_after(abandon.ABANDON_AFTER * 0.9), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: nap.execute(nap.validate({}), on_abandon=lambda: abandoned.append("nap"))
            )
            await waiting.wait()
            await anyio.sleep(0.05)  # deep in process.wait(), where the one-shot cancel was lost
            scope.cancel()
    assert scope.cancelled_caught
    assert abandoned == []
    assert abandoned_calls() == {}
    assert processes[0].returncode is not None  # killed and reaped


async def test_an_abandoned_tool_is_no_longer_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(abandon, "ABANDON_AFTER", 0.2)
    release = anyio.Event()
    swallowed: list[str] = []

    async def stubborn() -> str:
        while not release.is_set():
            try:
                await anyio.sleep(0.02)
            except BaseException as exc:  # the hostile part
                swallowed.append(type(exc).__name__)
        return "finally"

    try:
        outcome = await abandon.in_task("stubborn", stubborn, time_limit=0.05)
        assert outcome.timed_out
        assert outcome.abandoned
        assert swallowed  # it was stopped, and carried on
        before = len(swallowed)
        await anyio.sleep(0.2)
        # Left alone: its awaits are no longer cancelled (one cancel may be on its way still).
        assert len(swallowed) <= before + 1
    finally:
        release.set()
    for _ in range(500):  # it returns at its next await, and its count is released
        if not abandoned_calls():
            break
        await anyio.sleep(0.01)
    assert abandoned_calls() == {}
