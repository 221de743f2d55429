"""`examples/embedding.py`: a job queue in plain asyncio runs the agent, against the emulator."""

from __future__ import annotations

import re

import anyio
import pytest

from agent import Event, TextDelta, ToolCallFinished
from agent.testing import OllamaEmulator, ScriptRequest, tool_call_text

from .conftest import load_example

pytestmark = pytest.mark.anyio

embedding = load_example("embedding.py")

QUESTION = re.compile(r"What is (.+)\?")


def model(request: ScriptRequest) -> str:
    """Calls `calculate` on the user's expression, then answers with its result."""
    if request.tool_results:
        return f"It is {request.tool_results[-1]}.<|eot_id|>"
    match = QUESTION.fullmatch(request.last_user)
    assert match is not None, request.last_user
    return tool_call_text("calculate", {"expression": match[1]})


async def test_jobs_run_concurrently_on_shared_workers_and_stream_their_text() -> None:
    tasks = [f"What is {n} ** 3 + {n}?" for n in range(12)]
    seen: dict[int, list[Event]] = {}

    def progress(number: int, event: Event) -> None:
        seen.setdefault(number, []).append(event)

    async with OllamaEmulator(model) as emu:
        outcomes = await embedding.main(tasks, host=emu.url, workers=4, progress=progress)

    assert [o.task for o in outcomes] == tasks
    assert [o.status for o in outcomes] == ["answered"] * len(tasks)
    assert [o.text for o in outcomes] == [f"It is {n**3 + n}." for n in range(12)]
    # Each job's events went to the program as they happened, tool results and text deltas.
    for number, events in seen.items():
        [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
        assert finished.result == str(number**3 + number)
        deltas = [e.text for e in events if isinstance(e, TextDelta)]
        assert len(deltas) > 1
        assert "".join(deltas) == outcomes[number].text
    assert len(emu.completions) == 2 * len(tasks)


async def test_a_job_past_its_deadline_is_cancelled_and_the_others_go_on() -> None:
    arrived = anyio.Event()

    async def slow_model(request: ScriptRequest) -> str:
        if request.last_user == "What is the meaning of life?":
            arrived.set()
            await anyio.sleep_forever()  # only the deadline ends this one
        return model(request)

    tasks = ["What is 2 ** 10?", "What is the meaning of life?", "What is 7 * 6?"]
    async with OllamaEmulator(slow_model) as emu:
        # 2 s is plenty for the fast jobs, on any machine; the slow one never finishes.
        outcomes = await embedding.main(tasks, host=emu.url, workers=2, deadline=2.0)
        with anyio.fail_after(20):
            await emu.wait_idle()  # hangs if the cancelled run left its request open
        slow = [r for r in emu.completions if "meaning of life" in (r.prompt or "")]

    assert [o.status for o in outcomes] == ["answered", "timed out", "answered"]
    assert outcomes[0].text == "It is 1024."
    assert outcomes[2].text == "It is 42."
    assert arrived.is_set()
    [request] = slow
    assert request.cancelled
    assert not request.finished


async def test_ollama_down_is_reported_per_job_not_raised(dead_url: str) -> None:
    outcomes = await embedding.main(["What is 1 + 1?"], host=dead_url, workers=1)
    [outcome] = outcomes
    assert outcome.status == "error"
    assert dead_url in (outcome.error or "")
    assert outcome.text == ""
