"""Run records made the way a batch makes them: an Agent against the emulator, then
`RunRecord.from_result`. Each comes with the prompts the emulator received, BOS restored."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from agent import Agent, tool
from agent.batch import RunRecord, Verdict
from agent.llama3 import BEGIN_OF_TEXT
from agent.testing import EmulatedModel, OllamaEmulator, Script

TODAY = datetime.date(2024, 9, 21)
STARTED = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


@tool(builtin="brave_search")
def web_search(query: str) -> str:
    """Search the web.

    Args:
        query: What to look for.
    """
    return f"Llama 3.1 came out in July 2024 ({query})."


async def recorded(
    script: Script,
    task: str,
    *,
    id: str | int = "t-1",
    model: str = "llama3.1",
    family: str | None = None,
    passed: bool | None = True,
    **agent: Any,
) -> tuple[RunRecord, list[str], list[str]]:
    """The record of one run, the prompts the server received (with the BOS Ollama's raw mode
    adds itself, which the client therefore does not send) and the completions it sent back."""
    models = [EmulatedModel.llama(model, family=family)] if family else None
    agent.setdefault("today", TODAY)
    async with (
        OllamaEmulator(script, **({"models": models} if models else {})) as emu,
        Agent(model, host=emu.url, **agent) as made,
    ):
        result = await made.run(task)
        record = RunRecord.from_result(
            result,
            agent=made,
            id=id,
            task=task,
            metadata={"source": "test"},
            check=None if passed is None else Verdict(passed=passed, expected="x"),
            started=STARTED,
            seconds=0.5,
        )
        prompts = [BEGIN_OF_TEXT + (r.prompt or "") for r in emu.completions]
        return record, prompts, [r.completion for r in emu.completions]


def with_messages(record: RunRecord, messages: Sequence[dict[str, Any]]) -> RunRecord:
    """The record with other messages (a tampered or truncated file)."""
    return replace(record, messages=tuple(messages))
