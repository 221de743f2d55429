"""Concurrent tool calls, hundreds of concurrent runs, and cancellation that leaves nothing
running: no task, no thread, no subprocess, no HTTP stream."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import CodeType, FrameType

import anyio
import anyio.from_thread
import pytest

from agent import Agent, TextDelta, ToolCallFinished, ToolCallStarted, tool
from agent.backends import Backend, Done, GenerateEvent, GenerateOptions, ModelInfo, TextChunk
from agent.loop import _run as run_module
from agent.testing import ScriptRequest, answer

from .helpers import add, by_results, calls, running

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("live", [False, True], ids=["by-step", "task-group"])
async def test_the_calls_of_one_step_run_concurrently(*, live: bool) -> None:
    spans: dict[str, tuple[float, float]] = {}

    @tool
    async def wait(label: str, seconds: float) -> str:
        """Wait, then say the label.

        Args:
            label: What to say.
            seconds: How long to wait.
        """
        began = time.perf_counter()
        await anyio.sleep(seconds)
        spans[label] = (began, time.perf_counter())
        return label

    three = calls(
        ("wait", {"label": "a", "seconds": 0.6}),
        ("wait", {"label": "b", "seconds": 0.4}),
        ("wait", {"label": "c", "seconds": 0.2}),
    )
    script = by_results(lambda results: three if not results else "Done.<|eot_id|>")
    seen_at: dict[str, float] = {}
    events = []
    async with (
        running(script, tools=[wait]) as (_, agent),
        anyio.create_task_group() as group,
        agent.stream("Wait.", task_group=group if live else None) as stream,
    ):
        async for event in stream:
            events.append(event)
            seen_at.setdefault(event.type, time.perf_counter())

    # All three were running at once: each started before any ended.
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())
    # So the calls took about as long as the longest (0.6 s), not the sum (1.2 s).
    assert seen_at["tool_call_finished"] - seen_at["tool_call_started"] < 1.0
    result = events[-1].result  # type: ignore[union-attr]
    # The results go back to the model in its order, whatever order the calls ended in.
    assert [m.content for m in result.messages if m.role == "tool"] == ["a", "b", "c"]
    started = [e.index for e in events if isinstance(e, ToolCallStarted)]
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert started == [0, 1, 2]
    # Live, each call is reported as it ends; else all at the end, in the model's order.
    assert [e.index for e in finished] == ([2, 1, 0] if live else [0, 1, 2])
    durations = {e.index: e.duration for e in finished}
    assert durations[0] > durations[2]


async def test_with_a_task_group_each_call_is_reported_as_it_ends() -> None:
    # `slow` ends only once the caller has seen `fast` finish: reporting the calls only when
    # all are done would never get there.
    seen_fast = anyio.Event()

    @tool
    async def fast() -> str:
        """Answer at once."""
        return "fast"

    @tool
    async def slow() -> str:
        """Answer once the caller saw the fast one finish."""
        await seen_fast.wait()
        return "slow"

    two = calls(("slow", {}), ("fast", {}))
    script = by_results(lambda results: two if not results else "Both.<|eot_id|>")
    order = []
    async with running(script, tools=[fast, slow]) as (_, agent), anyio.create_task_group() as tg:
        with anyio.fail_after(20):
            async with agent.stream("Two.", task_group=tg) as stream:
                async for event in stream:
                    if isinstance(event, ToolCallFinished):
                        order.append(event.name)
                        if event.name == "fast":
                            seen_fast.set()
    assert order == ["fast", "slow"]
    assert stream.result.status == "answered"
    assert [m.content for m in stream.result.messages if m.role == "tool"] == ["slow", "fast"]


async def test_closing_a_stream_stops_the_calls_it_left_running_in_the_task_group() -> None:
    @tool
    async def fast() -> str:
        """Answer at once."""
        return "fast"

    @tool(timeout=120)
    async def forever() -> str:
        """Never finish."""
        await anyio.sleep(3600)
        return "never"

    two = calls(("forever", {}), ("fast", {}))
    script = by_results(lambda results: two)
    async with (
        running(script, tools=[fast, forever]) as (_, agent),
        anyio.create_task_group() as tg,
    ):
        stream = agent.stream("Two.", task_group=tg)
        async with stream:
            async for event in stream:
                if isinstance(event, ToolCallFinished):
                    break
        # The group is still open, but the run's call in it is gone: closing the stream
        # cancelled it and waited for it.
        assert _our_tasks() == []
    result = stream.result
    assert result.status == "cancelled"
    assert [m.content for m in result.messages if m.role == "tool"] == [
        "Error: the run was cancelled before forever finished.",
        "fast",
    ]


async def test_hundreds_of_concurrent_runs_share_one_agent_and_come_out_right() -> None:
    def script(request: ScriptRequest) -> str:
        if request.tool_results:
            return f"The answer is {request.tool_results[-1]}.<|eot_id|>"
        n = int(request.last_user.rsplit(" ", 1)[-1])
        return calls(("add", {"a": n, "b": 1000}))

    runs = 300
    answers: dict[int, str] = {}
    async with running(script, tools=[add]) as (emu, agent):

        async def one(n: int) -> None:
            result = await agent.run(f"Add 1000 to {n}")
            assert result.status == "answered"
            answers[n] = result.answer

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for n in range(runs):
                    group.start_soon(one, n)
    assert answers == {n: f"The answer is {n + 1000}." for n in range(runs)}
    assert len(emu.completions) == 2 * runs
    assert all(r.status == 200 for r in emu.completions)


def _await_chain_files(task: asyncio.Task[object]) -> Iterator[str]:
    """The source files along what the task is awaiting (`get_stack` shows only the top)."""
    awaitable: object = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is not None:
            yield frame.f_code.co_filename
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)


def _our_tasks() -> list[asyncio.Task[object]]:
    """Tasks running code of the runtime or of these tests' tools (the emulator's are not)."""
    ours = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        files = set(_await_chain_files(task))
        if any(
            f"{os.sep}agent{os.sep}{part}{os.sep}" in name or name == __file__
            for name in files
            for part in ("loop", "toolkit", "backends")
        ):
            ours.append(task)
    return ours


def _running_in_threads(code: CodeType) -> bool:
    for frame in sys._current_frames().values():
        walker: FrameType | None = frame
        while walker is not None:
            if walker.f_code is code:
                return True
            walker = walker.f_back
    return False


MARK = "31.4159265"  # a `sleep` argument no other process on the machine uses


def _sleepers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if MARK.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("live", [False, True], ids=["by-step", "task-group"])
async def test_cancelling_a_run_stops_its_tools_threads_and_subprocesses(*, live: bool) -> None:
    started = {"async": anyio.Event(), "thread": anyio.Event(), "process": anyio.Event()}
    thread_done = threading.Event()

    @tool(timeout=120)
    async def forever() -> str:
        """Never finish."""
        started["async"].set()
        await anyio.sleep(3600)
        return "never"

    @tool(timeout=120)
    def spin() -> str:
        """Work in a thread until cancelled."""
        anyio.from_thread.run_sync(started["thread"].set)
        try:
            while True:
                anyio.from_thread.check_cancelled()
                time.sleep(0.01)
        finally:
            thread_done.set()

    @tool(timeout=120)
    async def subprocess() -> str:
        """Run a long subprocess."""
        started["process"].set()
        await anyio.run_process(["sleep", MARK])
        return "slept"

    three = calls(("forever", {}), ("spin", {}), ("subprocess", {}))
    script = by_results(lambda results: three)
    async with (
        running(script, tools=[forever, spin, subprocess]) as (emu, agent),
        # Live, the calls run in a group outside the cancelled scope: the run must stop them.
        anyio.create_task_group() as calls_group,
    ):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:

                async def cancel_once_all_started() -> None:
                    for event in started.values():
                        await event.wait()
                    with anyio.fail_after(10):
                        while True:  # until the subprocess is really there
                            if _sleepers():
                                break
                            await anyio.sleep(0.01)
                    # Cancel once run_process waits for the process, not while asyncio still
                    # connects its pipes (where asyncio kills it by itself): a one-shot native
                    # cancel left the tool there, abandoned, until the process exited.
                    await anyio.sleep(0.1)
                    # The checks below can see a run: here they do.
                    assert _our_tasks()
                    assert _running_in_threads(spin.function.__code__)
                    scope.cancel()

                group.start_soon(cancel_once_all_started)
                stream = agent.stream(
                    "Do three slow things.", task_group=calls_group if live else None
                )
                async with stream:
                    async for _ in stream:
                        pass
        assert scope.cancelled_caught
        # Right away, no task of the run is left.
        assert _our_tasks() == []
        # The subprocess got SIGKILL; when the cancellation caught it still starting, the
        # kernel may take a moment to finish it off (a leaked `sleep` would live 31 s).
        with anyio.fail_after(5):
            while True:
                if not _sleepers():
                    break
                await anyio.sleep(0.01)
        # The abandoned worker thread leaves the tool at its next cancellation check (the
        # thread itself goes back to anyio's idle pool).
        assert await anyio.to_thread.run_sync(thread_done.wait, 10)
        await anyio.sleep(0.05)
        assert not _running_in_threads(spin.function.__code__)
        assert emu.completions[0].finished
    # What the run did is kept, each call with a tool message saying it was cancelled.
    result = stream.result
    assert result.status == "cancelled"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "tool", "tool"]
    assert [m.name for m in result.messages[2:]] == ["forever", "spin", "subprocess"]
    assert all("cancelled before" in m.content for m in result.messages[2:])


async def test_cancelling_during_generation_closes_the_http_stream() -> None:
    long = " ".join(["word"] * 400)
    async with running(answer(long), emulator={"token_rate": 50.0}) as (emu, agent):
        with anyio.CancelScope() as scope:
            async with agent.stream("Talk.") as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        scope.cancel()
        assert scope.cancelled_caught
        assert _our_tasks() == []
        with anyio.fail_after(10):
            await emu.wait_idle()
        request = emu.completions[0]
        assert request.cancelled
        assert len(request.completion) < len(long)


async def test_closing_a_stream_early_cancels_the_run_and_keeps_its_state() -> None:
    long = " ".join(["word"] * 400)
    script = by_results(
        lambda results: calls(("add", {"a": 1, "b": 2})) if not results else long + "<|eot_id|>"
    )
    async with running(script, tools=[add], emulator={"token_rate": 50.0}) as (emu, agent):
        stream = agent.stream("Add, then talk.")
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        assert _our_tasks() == []
        with anyio.fail_after(10):
            await emu.wait_idle()
        assert emu.completions[-1].cancelled
    result = stream.result
    assert result.status == "cancelled"
    assert result.steps == 1
    assert [m.role for m in result.messages] == ["user", "assistant", "tool"]


class _SlowToClose(Backend):
    """A backend whose stream must wait to close (returning a connection, say)."""

    def __init__(self, *, close_for: float) -> None:
        self.close_for = close_for
        self.closed: list[str] = []

    async def model_info(self, model: str) -> ModelInfo:
        return ModelInfo(name=model, context_length=8192, family="3.1")

    async def generate(
        self, prompt: str, *, model: str, options: GenerateOptions
    ) -> AsyncIterator[GenerateEvent]:
        try:
            yield TextChunk(text="Hello, world. ")
            await anyio.sleep(30)  # the run is cancelled here
            yield Done(done_reason="stop")
        finally:
            try:
                await anyio.sleep(self.close_for)
                self.closed.append("done")
            except BaseException:
                self.closed.append("cancelled")
                raise


async def _cancel_at_the_first_text(agent: Agent) -> None:
    """Read the run's events; at the first text, cancel and close the stream (its backend
    stream then closes under that cancellation)."""
    with anyio.CancelScope() as scope:
        async with agent.stream("Hi") as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    scope.cancel()
                    break


async def test_a_stream_that_waits_to_close_closes_shielded_from_the_cancellation() -> None:
    backend = _SlowToClose(close_for=0.05)
    await _cancel_at_the_first_text(Agent("llama3.1", backend=backend))
    assert backend.closed == ["done"]  # the cancellation did not cut its cleanup short


async def test_closing_a_stream_is_bounded_by_its_own_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_module, "_CLOSE_TIMEOUT", 0.1)
    backend = _SlowToClose(close_for=30)
    began = time.perf_counter()
    await _cancel_at_the_first_text(Agent("llama3.1", backend=backend))
    assert time.perf_counter() - began < 10  # not the 30 s the cleanup would take
    assert backend.closed == ["cancelled"]
