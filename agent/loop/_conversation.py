"""The messages a run starts from: the agent's system prompt, earlier history, the task."""

from __future__ import annotations

from collections.abc import Sequence

from agent.errors import DeveloperError
from agent.llama3 import Message

from ._result import RunResult

History = RunResult | Sequence[Message] | None


def opening_messages(
    task: str | Message | None, *, system: str | None, history: History
) -> tuple[list[Message], int]:
    """The run's first messages, and the index of the task among them (`None`: no new task,
    the history as it stands).

    The agent's `system` (trusted: the program wrote it) replaces a system message at the start
    of the history; history without one keeps its own. So a conversation continued by the same
    agent renders the same prefix and the server's prompt cache still applies.
    """
    earlier = list(history.messages if isinstance(history, RunResult) else history or ())
    for message in earlier:
        if not isinstance(message, Message):
            raise DeveloperError(
                f"history must hold agent.llama3.Message objects (or be a RunResult), got "
                f"{type(message).__name__}; build them with Message(...) or Message.from_dict(...)"
            )
    if system is not None:
        if earlier and earlier[0].role == "system":
            earlier = earlier[1:]
        earlier.insert(0, Message(role="system", content=system, trusted=True))
    if isinstance(task, Message):
        if task.role != "user":
            raise DeveloperError(f"the task must be a user message, got role '{task.role}'")
        earlier.append(task)
    elif task is not None:
        earlier.append(Message(role="user", content=task))
    return earlier, len(earlier) - 1 if task is not None else len(earlier)
