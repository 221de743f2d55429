"""Embedding llama-agent in an asyncio program you already have.

The library is written with anyio and runs on the program's own asyncio event loop: no extra
thread, no second loop. Here the "existing program" is a small job queue, the shape of a chat
bot or a worker service: jobs arrive on an `asyncio.Queue`, a few worker tasks take them, and
each job runs the agent under its own deadline. It shows:

- one `Agent` for the whole program: it keeps no per-run state, so every worker shares it, and
  its connection pool, safely;
- a run's answer streamed as the model writes it (`agent.stream`), here into a callback;
- cancellation from asyncio: when `asyncio.timeout` (or `task.cancel()`, or Ctrl-C) interrupts a
  run, its request to Ollama is closed and its running tool calls are cancelled; nothing is left
  behind. (`Limits(run_timeout=...)` is the other way: the run ends with status "timeout"
  instead of raising.)

Run it against Ollama (`ollama pull llama3.1` first; `OLLAMA_HOST` is honoured):

    python examples/embedding.py "What is 2**64?" "How many seconds are in a leap year?"
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent import Agent, Event, RunFinished, TextDelta, ToolCallFinished, ToolCallStarted
from llama_agent_tools.math import math_tools

SYSTEM = "Use the calculate tool for any arithmetic. Answer in one sentence."

# Where a job's events go as they happen: (job number, event). The program decides: a chat
# message edited as the text streams in, a websocket, a log.
Progress = Callable[[int, Event], None]


def show_tool_calls(number: int, event: Event) -> None:
    """The default `Progress`: one line per tool call on stderr."""
    if isinstance(event, ToolCallStarted):
        print(f"[job {number}] -> {event.name}({dict(event.arguments)})", file=sys.stderr)
    elif isinstance(event, ToolCallFinished):
        print(f"[job {number}] <- {event.result[:80]}", file=sys.stderr)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How one job ended: `status` is the run's (`"answered"`, `"step_limit"`, ...), or
    `"timed out"` when the job's deadline cancelled it; `text` is what was streamed."""

    task: str
    status: str
    text: str
    error: str | None = None


async def run_job(
    agent: Agent, number: int, task: str, *, deadline: float, progress: Progress
) -> Outcome:
    """One job: stream the run's events, under a deadline set the asyncio way."""
    pieces: list[str] = []
    try:
        async with asyncio.timeout(deadline), agent.stream(task) as events:
            async for event in events:
                progress(number, event)
                if isinstance(event, TextDelta):
                    pieces.append(event.text)
                elif isinstance(event, RunFinished):
                    # A server problem (Ollama down, model missing) ends the stream here, with
                    # status "error", instead of raising.
                    result = event.result
                    return Outcome(
                        task=task, status=result.status, text="".join(pieces), error=result.error
                    )
    except TimeoutError:
        # `asyncio.timeout` cancelled the run inside; leaving `agent.stream(...)` waited for its
        # HTTP request and tool calls to stop. The job, and the program, go on.
        return Outcome(task=task, status="timed out", text="".join(pieces))
    raise AssertionError("a run's last event is RunFinished")


async def main(
    tasks: Sequence[str],
    *,
    host: str | None = None,
    workers: int = 3,
    deadline: float = 120.0,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Run `tasks` on `workers` concurrent workers; the outcomes come back in the tasks' order."""
    report = progress or show_tool_calls
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for job in enumerate(tasks):
        queue.put_nowait(job)
    outcomes: dict[int, Outcome] = {}

    async def worker(agent: Agent) -> None:
        while True:
            number, task = await queue.get()
            try:
                outcomes[number] = await run_job(
                    agent, number, task, deadline=deadline, progress=report
                )
            finally:
                queue.task_done()

    async with (
        Agent("llama3.1", tools=math_tools(), system=SYSTEM, host=host) as agent,
        asyncio.TaskGroup() as group,  # a worker that crashes stops the others, and raises
    ):
        running = [group.create_task(worker(agent)) for _ in range(workers)]
        await queue.join()
        for task in running:  # idle workers wait on the queue forever: stop them
            task.cancel()
    return [outcomes[number] for number in range(len(tasks))]


if __name__ == "__main__":
    jobs = sys.argv[1:] or ["What is 2**64?", "How many seconds are in a leap year?"]
    for outcome in asyncio.run(main(jobs)):
        print(f"{outcome.status:>10}  {outcome.task}\n            {outcome.text}")
