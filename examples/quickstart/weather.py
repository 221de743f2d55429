"""Quickstart 1: a tool is a typed, documented Python function. Run: `python weather.py`."""

import anyio

from agent import Agent, tool


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather for a city.

    Args:
        city: The city's name, for instance Paris.
        unit: celsius or fahrenheit.
    """
    return f"22 degrees {unit}, sunny, in {city}"  # call your weather service here


async def main() -> None:
    async with Agent("llama3.1", tools=[get_weather], system="Be brief.") as agent:
        result = await agent.run("Do I need a coat in Paris today?")
    print(result.answer)  # the model's reply
    print(result.status, result.steps)  # answered 2


if __name__ == "__main__":
    anyio.run(main)
