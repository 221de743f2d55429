"""Running a call the caller can walk away from: the task keeps the caller's context, exceptions
pass through `await` as they would, and the caps are checked."""

from __future__ import annotations

import contextvars

import anyio
import anyio.lowlevel
import pytest

from agent.errors import DeveloperError
from agent.toolkit import _abandon as abandon
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


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_set_abandoned_limit_wants_positive_integers(bad: object) -> None:
    with pytest.raises(DeveloperError, match=r"set_abandoned_limit\(per_tool="):
        set_abandoned_limit(per_tool=bad)  # type: ignore[arg-type]
    with pytest.raises(DeveloperError, match=r"set_abandoned_limit\(total="):
        set_abandoned_limit(total=bad)  # type: ignore[arg-type]
    assert abandon._registry.per_tool == abandon.DEFAULT_ABANDONED_PER_TOOL
