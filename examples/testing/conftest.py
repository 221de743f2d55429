"""Fixtures for testing an agent against `OllamaEmulator`: copy this file with the tests.

The emulator is a real HTTP server on 127.0.0.1 that speaks Ollama's API. It plays the model
with a *script*: a function of the request (the exact prompt, the tool results so far) that
returns what the model writes. Every request it gets is recorded in `emu.requests` /
`emu.completions`, prompt included. No model, GPU or network is needed.

The `testing` extra's pytest plugin already gives every test `ollama_emulator` and
`scripted_agent` (see the README); the fixtures here do the same on the test's own event loop,
built for your agent, so its async methods (`await emu.refuse_connections()`) are awaited directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from my_agent import Forecasts, build_agent

from agent import Agent
from agent.testing import OllamaEmulator


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (through anyio's pytest plugin, installed with anyio)."""
    return "asyncio"


@pytest.fixture
async def emu() -> AsyncIterator[OllamaEmulator]:
    """An emulated Ollama. Each test sets what the model writes: `emu.script = ...`."""
    async with OllamaEmulator() as emulator:
        yield emulator


@pytest.fixture
async def agent(emu: OllamaEmulator) -> AsyncIterator[Agent]:
    """Your agent, talking to the emulator instead of a real Ollama."""
    async with build_agent(host=emu.url) as made:
        yield made


@pytest.fixture
def forecasts() -> Forecasts:
    return Forecasts(by_city={"paris": "sunny, 24 °C", "oslo": "rain all day, 9 °C"})
