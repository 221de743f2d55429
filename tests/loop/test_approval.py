"""Approval of calls: a callback (sync or async), a decision on the streamed event, `run()` with
nobody to ask, "always", the run's deadline and cancellation while waiting."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from agent import (
    ApprovalRequested,
    Limits,
    Tool,
    ToolCallRejected,
    ToolCallStarted,
    event_to_dict,
    tool,
)
from agent.errors import DeveloperError
from agent.testing import call_tools, sequence

from .helpers import add, call, collect, running, types

pytestmark = pytest.mark.anyio

RAN: list[str] = []


@tool(approval=True)
def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: The file's path.
    """
    RAN.append(path)
    return f"deleted {path}"


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


def _tool_messages(result: Any) -> list[str]:
    return [m.content for m in result.messages if m.role == "tool"]


async def test_a_sync_callback_that_says_yes_lets_the_call_run() -> None:
    asked: list[ApprovalRequested] = []

    def approve(request: ApprovalRequested) -> str:
        asked.append(request)
        return "yes"

    script = call_tools([("delete_file", {"path": "a.txt"})], then="Deleted.")
    async with running(script, tools=[delete_file], approve=approve) as (_, agent):
        events = await collect(agent.stream("Delete a.txt"))
    assert RAN == ["a.txt"]
    (request,) = asked
    assert (request.tool, dict(request.arguments), request.step) == (
        "delete_file",
        {"path": "a.txt"},
        1,
    )
    kinds = types(events)
    assert kinds.index("approval_requested") < kinds.index("tool_call_started")
    assert events[-1].result.status == "answered"


async def test_an_async_callback_that_says_no_refuses_the_call_and_the_run_goes_on() -> None:
    async def approve(request: ApprovalRequested) -> bool:
        await anyio.sleep(0.01)
        return False

    script = call_tools([("delete_file", {"path": "a.txt"})], then="I did not delete it.")
    async with running(script, tools=[delete_file], approve=approve) as (_, agent):
        events = await collect(agent.stream("Delete a.txt"))
    assert RAN == []
    (rejected,) = [e for e in events if isinstance(e, ToolCallRejected)]
    assert rejected.reason == "denied"
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    result = events[-1].result
    assert result.status == "answered"
    assert result.answer == "I did not delete it."
    (message,) = _tool_messages(result)
    assert message.startswith("Error: the call to delete_file was not approved, so it did not run")


async def test_always_approves_the_tools_later_calls_in_the_run_without_asking() -> None:
    asked: list[str] = []

    def approve(request: ApprovalRequested) -> str:
        asked.append(str(request.arguments["path"]))
        return "always"

    calls = [("delete_file", {"path": "a"}), ("delete_file", {"path": "b"})]
    async with running(call_tools(calls), tools=[delete_file], approve=approve) as (_, agent):
        result = await agent.run("Delete a and b")
    assert RAN == ["a", "b"]
    assert asked == ["a"]
    assert result.status == "answered"


async def test_tools_without_approval_are_never_asked_about() -> None:
    def approve(request: ApprovalRequested) -> str:
        raise AssertionError("asked")

    script = call_tools([("add", {"a": 1, "b": 2})])
    async with running(script, tools=[add, delete_file], approve=approve) as (_, agent):
        result = await agent.run("Add")
    assert _tool_messages(result) == ["3"]


async def test_while_streaming_a_decision_on_the_event_approves_or_denies_with_a_reason() -> None:
    calls = [("delete_file", {"path": "keep.txt"}), ("delete_file", {"path": "tmp.txt"})]
    async with running(call_tools(calls), tools=[delete_file]) as (_, agent):
        async with agent.stream("Clean up") as stream:
            async for event in stream:
                if isinstance(event, ApprovalRequested):
                    if event.arguments["path"] == "keep.txt":
                        event.deny("the user keeps that file")
                    else:
                        event.approve()
                    assert event.decision in ("yes", "no")
        result = stream.result
    assert RAN == ["tmp.txt"]
    refused, done = _tool_messages(result)
    assert "not approved" in refused
    assert refused.endswith(
        "did not run: the user keeps that file. Do not repeat it; go on without it, or answer "
        "and say what you could not do."
    )
    assert done == "deleted tmp.txt"


async def test_the_reader_may_await_before_deciding() -> None:
    script = call_tools([("delete_file", {"path": "a"})])
    async with running(script, tools=[delete_file]) as (_, agent):
        async with agent.stream("Delete a") as stream:
            async for event in stream:
                if isinstance(event, ApprovalRequested):
                    await anyio.sleep(0.05)  # a person clicking, a policy service answering
                    event.approve()
        result = stream.result
    assert RAN == ["a"]
    assert result.status == "answered"


async def test_a_reader_that_reads_on_without_deciding_gets_the_call_refused() -> None:
    script = call_tools([("delete_file", {"path": "a"})], then="Could not.")
    async with running(script, tools=[delete_file]) as (_, agent):
        with anyio.fail_after(10):  # never hangs
            events = await collect(agent.stream("Delete a"))
    assert RAN == []
    assert events[-1].result.status == "answered"
    (message,) = _tool_messages(events[-1].result)
    assert "nobody approved it" in message


async def test_run_without_a_callback_refuses_the_call_and_says_why() -> None:
    script = call_tools([("delete_file", {"path": "a"})], then="Could not.")
    async with running(script, tools=[delete_file]) as (_, agent):
        result = await agent.run("Delete a")
    assert RAN == []
    assert result.status == "answered"
    (message,) = _tool_messages(result)
    assert "nobody approved it" in message


async def test_a_callback_still_deciding_at_the_deadline_ends_the_run_as_a_timeout() -> None:
    async def approve(request: ApprovalRequested) -> str:
        await anyio.sleep(30)
        return "yes"

    script = call_tools([("delete_file", {"path": "a"})])
    limits = Limits(run_timeout=0.5)
    async with running(script, tools=[delete_file], limits=limits, approve=approve) as (_, a):
        with anyio.fail_after(10):
            result = await a.run("Delete a")
    assert result.status == "timeout"
    assert RAN == []
    (message,) = _tool_messages(result)  # the conversation stays well formed
    assert message.startswith("Error:")


async def test_a_reader_deciding_past_the_deadline_ends_the_run_before_the_call_runs() -> None:
    script = call_tools([("delete_file", {"path": "a"})])
    async with running(script, tools=[delete_file], limits=Limits(run_timeout=0.3)) as (_, a):
        async with a.stream("Delete a") as stream:
            async for event in stream:
                if isinstance(event, ApprovalRequested):
                    await anyio.sleep(0.5)
                    event.approve()
        result = stream.result
    assert result.status == "timeout"
    assert RAN == []


async def test_cancelling_the_run_stops_a_blocked_sync_callback() -> None:
    release = threading.Event()

    def approve(request: ApprovalRequested) -> str:
        release.wait(10)  # a person who never answers
        return "yes"

    script = call_tools([("delete_file", {"path": "a"})])
    async with running(script, tools=[delete_file], approve=approve) as (_, agent):
        with anyio.move_on_after(0.5) as scope:
            await agent.run("Delete a")
    release.set()
    assert scope.cancelled_caught
    assert RAN == []


async def test_a_callback_that_answers_nonsense_is_a_developer_error() -> None:
    script = call_tools([("delete_file", {"path": "a"})])
    async with running(script, tools=[delete_file], approve=lambda request: "maybe") as (_, a):
        with pytest.raises(DeveloperError, match="returned 'maybe'"):
            await a.run("Delete a")


async def test_the_event_is_json_without_its_decision() -> None:
    seen: list[dict[str, Any]] = []

    def approve(request: ApprovalRequested) -> str:
        seen.append(event_to_dict(request))
        return "yes"

    script = sequence(call("delete_file", path="a"), "Done.<|eot_id|>")
    async with running(script, tools=[delete_file], approve=approve) as (_, agent):
        await agent.run("Delete a")
    (data,) = seen
    assert data["type"] == "approval_requested"
    assert data["tool"] == "delete_file"
    assert data["arguments"] == {"path": "a"}
    assert "pending" not in data


def test_approval_is_an_option_of_every_way_to_make_a_tool() -> None:
    def f(x: int) -> int:
        """F.

        Args:
            x: X.
        """
        return x

    assert Tool.from_function(f, approval=True).approval
    assert not Tool.from_function(f).approval
    assert Tool.from_function(f).with_options(approval=True).approval
    assert not delete_file.with_options(approval=False).approval
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    made = Tool.from_schema(
        name="f", description="F.", parameters=schema, function=f, approval=True
    )
    assert made.approval
