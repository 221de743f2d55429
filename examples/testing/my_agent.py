"""The agent under test: it stands for your own code. `test_my_agent.py` shows how to test it.

A day planner with one tool, `get_forecast`. The forecasts come from the program (here a dict;
in your code an API client), handed to the tool as `deps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import Agent, Limits, RunContext, tool
from agent.errors import ToolExecutionError

SYSTEM = (
    "You help people plan their day. Check the forecast with get_forecast before you suggest "
    "anything outdoors. Answer in two sentences at most."
)
FALLBACK = "Sorry, I could not plan that. Please try again."


@dataclass(frozen=True, kw_only=True)
class Forecasts:
    """Today's forecast by city (lowercase)."""

    by_city: dict[str, str]


@tool(retries=2)
async def get_forecast(ctx: RunContext[Forecasts], city: str) -> str:
    """Get today's weather forecast for a city.

    Args:
        city: The city's name, for instance Paris.
    """
    forecast = ctx.deps.by_city.get(city.strip().lower())
    if forecast is None:
        raise ToolExecutionError(f"no forecast for {city!r}; try the nearest large city")
    return forecast


def build_agent(*, host: str | None = None, **options: Any) -> Agent:
    """The planner (`host`: Ollama's URL, else `OLLAMA_HOST`; `options`: more `Agent` arguments)."""
    return Agent(
        "llama3.1",
        tools=[get_forecast],
        system=SYSTEM,
        host=host,
        limits=Limits(max_steps=4, max_repeats=2),
        **options,
    )


async def plan_day(agent: Agent, question: str, forecasts: Forecasts) -> str:
    """What the application shows the user: the answer, or an apology if the run went nowhere.

    A server problem (`OllamaUnreachableError`, `ModelNotFoundError`) is raised for the caller
    to handle: it needs an operator, not a retry.
    """
    result = await agent.run(question, deps=forecasts)
    return result.answer if result.ok else FALLBACK
