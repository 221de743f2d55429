"""What the OpenTelemetry hooks cost a step (a benchmark): `python bench/bench_tracing.py`.

One step's worth of the loop's tracing calls (a model request with 50 streamed chunks, one tool
call, and a run's span for every five steps), timed with no SDK installed (the API's no-op spans:
what every user without an SDK pays), then with the SDK recording into a no-op processor. Prints
microseconds per step, best of several rounds. A step through the emulator costs about 3 ms
(`bench/RESULTS.md`, section 1).
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agent import Limits, tool
from agent.backends import Done, GenerateOptions, OllamaBackend, Usage
from agent.llama3 import Message, ToolCall
from agent.loop._calls import Slot
from agent.loop._run import RunSpec, RunState
from agent.loop._tracing import RunTrace
from agent.toolkit import Toolbox, ToolResult

CHUNKS = 50
STEPS_PER_RUN = 5


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


async def _nothing() -> None:
    pass


def _drive(coroutine: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(StopIteration):
        coroutine.send(None)


def _one_run(spec: RunSpec, state: RunState, slot: Slot, done: Done) -> None:
    run = RunTrace(spec, state, name="bench", deadline=float("inf"))
    for _ in range(STEPS_PER_RUN):
        request = run.request(spec, state.messages)
        for _ in range(CHUNKS):
            if request.span is not None:  # as the loop does: only a recording span is made current
                _drive(request.current(_nothing()))
        request.done(done, completion="", calls=(slot.call,))
        with run.tool(slot):
            slot.result = ToolResult(text="3")
    run.end(state)


def _best(fn: Callable[[], None], *, rounds: int = 7, number: int = 400) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - began) / number)
    return best


def main() -> None:
    spec = RunSpec(
        backend=OllamaBackend("http://127.0.0.1:11434"),
        model="llama3.1",
        toolbox=Toolbox([add]),
        options=GenerateOptions(temperature=0.2),
        limits=Limits(),
        tool_format=None,
        tool_choice="auto",
    )
    state = RunState(
        run_id="0" * 32,
        model="llama3.1",
        messages=[Message(role="user", content="Add 1 and 2.")],
        new_from=0,
        limits=Limits(),
        today=datetime.date(2024, 9, 21),
    )
    call = ToolCall(name="add", arguments={"a": 1, "b": 2}, id="call_1")
    slot = Slot(index=0, call=call, tool=add, bound=add.validate({"a": 1, "b": 2}))
    done = Done(done_reason="stop", usage=Usage(prompt_eval_count=100, eval_count=50))

    def step() -> None:
        _one_run(spec, state, slot, done)

    def bare() -> None:  # the same loops without the hooks: subtracted
        for _ in range(STEPS_PER_RUN):
            for _ in range(CHUNKS):
                if slot is None:
                    pass
            slot.result = ToolResult(text="3")

    floor = _best(bare) / STEPS_PER_RUN
    no_sdk = _best(step) / STEPS_PER_RUN - floor
    print(f"no SDK (the API's no-op spans): {no_sdk * 1e6:7.2f} µs per step")

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())  # records, exports nothing
    recording = _best(step, number=100) / STEPS_PER_RUN - floor
    print(f"SDK recording, no exporter:     {recording * 1e6:7.2f} µs per step")


if __name__ == "__main__":
    main()
