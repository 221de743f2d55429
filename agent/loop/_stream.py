"""`RunStream`: the events of one run, and its result so far."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType

from ._events import Event
from ._result import RunResult
from ._state import RunState


class RunStream:
    """What `Agent.stream()` returns: an async iterator of `Event`s ending with `RunFinished`.

    Iterating drives the run; nothing runs between iterations (except, with `task_group=`, the
    current step's tool calls, in that group). Closing the stream early (`await
    stream.aclose()`, leaving `async with stream:`) or cancelling the task that iterates cancels
    the run: its HTTP stream and every running tool call, all stopped when that returns.
    `result` is the run's state at any moment; a run closed or cancelled before its end reads as
    status `"cancelled"`, with every step completed so far in `result.messages`.

    `async with stream:` holds no task group or cancel scope, so it may span a `yield` (an SSE
    endpoint's generator, for instance).

    A `RunError` (Ollama down, model missing...) does not raise here: the stream ends with a
    `RunFinished` whose result has status `"error"` and the exception in `result.exception`.
    """

    def __init__(self, events: AsyncGenerator[Event, None], state: RunState) -> None:
        self._events = events
        self._state = state

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the run if it is still going; waits until its stream and tools have stopped."""
        await self._events.aclose()

    async def __aenter__(self) -> RunStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def result(self) -> RunResult:
        """The run's result, or what it has done so far."""
        return self._state.result()

    @property
    def run_id(self) -> str:
        return self._state.run_id
