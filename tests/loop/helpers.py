"""Tools, scripts and a harness shared by the loop's end-to-end tests (all through the emulator)."""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from agent import Agent, Event, RunStream, tool
from agent.testing import OllamaEmulator, Script, ScriptRequest, tool_call_text

TODAY = datetime.date(2024, 9, 21)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool(retries=1)
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


@asynccontextmanager
async def running(
    script: Script, *, emulator: Mapping[str, Any] | None = None, **agent: Any
) -> AsyncIterator[tuple[OllamaEmulator, Agent]]:
    """An emulator playing `script`, and an agent talking to it (closed afterwards)."""
    async with OllamaEmulator(script, **(emulator or {})) as emu:
        agent.setdefault("today", TODAY)
        async with Agent(host=emu.url, **agent) as made:
            yield emu, made


async def collect(stream: RunStream) -> list[Event]:
    """Every event of a run, in order."""
    async with stream:
        return [event async for event in stream]


def types(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def call(name: str, **arguments: Any) -> str:
    """A JSON tool call the way Llama 3.1 writes it after `Environment: ipython`."""
    return tool_call_text(name, arguments)


def calls(*pairs: tuple[str, Mapping[str, Any]]) -> str:
    """Several JSON calls in one completion, one per line, behind one python tag."""
    body = "\n".join(json.dumps({"name": n, "parameters": dict(a)}) for n, a in pairs)
    return f"<|python_tag|>{body}<|eom_id|>"


def by_results(reply: Callable[[list[str]], str]) -> Script:
    """A stateless script: `reply(tool results since the user's turn)` gives the completion."""

    def script(request: ScriptRequest) -> str:
        return reply(request.tool_results)

    return script
