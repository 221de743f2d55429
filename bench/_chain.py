"""The five-step tool chain every timing section runs, and the loops that run it.

One run: the task, then five `add` calls one after the other (each one a model request whose
completion is a `<|python_tag|>` JSON call), then the answer: six requests. The emulator plays
the model with `chain()` (stateless: it reads how many tool results the prompt holds, so
thousands of concurrent runs can share it).

Three ways to run it:

* `agent_run`: `Agent.run` (render, stream, parse, validate, execute, feed back);
* `hand_run`: a minimal hand-written loop on the official `ollama.AsyncClient`: the prompt is
  grown by string concatenation, the call read with `json.loads`, nothing validated;
* `bare_run`: the same loop on a bare `aiohttp` session reading NDJSON lines (the floor).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import aiohttp
import ollama

from agent import Agent, Tool, tool
from agent.llama3 import BEGIN_OF_TEXT
from agent.testing import Script, call_tools

MODEL = "llama3.1"
STEPS = 5  # tool calls per run; the answer makes six requests
TASK = "Start from 0 and add 1 five times, one call at a time."
TODAY = datetime.date(2024, 9, 21)  # fixed, so every prompt of every run is the same text
NUM_CTX = 8192  # what the backend sizes these prompts to; the baselines send the same
PYTHON_TAG = "<|python_tag|>"
_NEXT_TURN = (
    "<|eom_id|><|start_header_id|>ipython<|end_header_id|>\n\n{result}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


async def _add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def _add_sync(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


add: Tool[..., Any] = tool(name="add")(_add)
add_sync: Tool[..., Any] = tool(name="add")(_add_sync)  # runs in a worker thread
FUNCTIONS = {"add": _add}


def chain_calls(steps: int = STEPS) -> list[tuple[str, dict[str, Any]]]:
    return [("add", {"a": i, "b": 1}) for i in range(steps)]


def chain_script(steps: int = STEPS) -> Script:
    """The emulated model: `steps` calls to `add`, then "The total is N."."""
    return call_tools(chain_calls(steps), then=lambda last: f"The total is {last}.")


def chain() -> Script:
    """The five-step chain, for `python -m agent.testing serve --script bench._chain:chain`."""
    return chain_script()


def make_agent(url: str, *, sync_tool: bool = False) -> Agent:
    return Agent(MODEL, tools=[add_sync if sync_tool else add], host=url, today=TODAY)


def first_prompt(agent: Agent) -> str:
    """The chain's first prompt as sent on the wire (without the BOS text Ollama adds)."""
    return agent.render(TASK).removeprefix(BEGIN_OF_TEXT)


def check_answer(answer: str, steps: int = STEPS) -> None:
    if answer.strip() != f"The total is {steps}.":
        raise AssertionError(f"the chain went wrong: {answer!r}")


async def agent_run(agent: Agent) -> None:
    result = await agent.run(TASK)
    if result.steps != STEPS + 1:
        raise AssertionError(f"{result.steps} steps, status {result.status}: {result.error}")
    check_answer(result.answer)


async def hand_run(client: ollama.AsyncClient, prompt: str) -> None:
    """The chain on the official client, with nothing but string concatenation and json.loads."""
    while True:
        parts = []
        stream = await client.generate(
            MODEL, prompt, raw=True, stream=True, options={"num_ctx": NUM_CTX}
        )
        async for part in stream:
            parts.append(part.response or "")
        text = "".join(parts)
        if not text.startswith(PYTHON_TAG):
            check_answer(text)
            return
        call = json.loads(text[len(PYTHON_TAG) :])
        result = await FUNCTIONS[call["name"]](**call["parameters"])
        prompt += text + _NEXT_TURN.format(result=result)


async def bare_run(session: aiohttp.ClientSession, url: str, prompt: str) -> None:
    """The same loop on bare aiohttp: the floor for a Python client."""
    while True:
        body = {
            "model": MODEL,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            "options": {"num_ctx": NUM_CTX},
        }
        parts = []
        async with session.post(f"{url}/api/generate", json=body) as response:
            async for line in response.content:
                parts.append(json.loads(line).get("response", ""))
        text = "".join(parts)
        if not text.startswith(PYTHON_TAG):
            check_answer(text)
            return
        call = json.loads(text[len(PYTHON_TAG) :])
        result = await FUNCTIONS[call["name"]](**call["parameters"])
        prompt += text + _NEXT_TURN.format(result=result)
