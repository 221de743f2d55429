"""Quickstart 3: streaming and cancellation. Run from this folder: `python stream.py`."""

import anyio

from agent import TextDelta, ToolCallStarted, load_agent


async def main() -> None:
    async with load_agent("agent.yaml") as agent:  # one agent serves any number of runs at once
        # Stream a run: the answer as it is written, each tool call as it starts.
        async with agent.stream("Do I need a coat in Paris today?") as events:
            async for event in events:
                if isinstance(event, ToolCallStarted):
                    print(f"[{event.name}({dict(event.arguments)})]")
                elif isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
        print(f"\n({events.result.status} in {events.result.steps} steps)")

        # Cancel: a deadline, task.cancel() or leaving `agent.stream()` early stops the run,
        # its request to Ollama and its running tool calls.
        with anyio.move_on_after(30) as deadline:
            result = await agent.run("What is 2**100?")
        print("gave up" if deadline.cancelled_caught else result.answer)


if __name__ == "__main__":
    anyio.run(main)
