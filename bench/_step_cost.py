"""The runtime's CPU work for one step at 40 messages and 10 tools, without any I/O.

A step renders the whole conversation (`render_prompt`), parses the completion as it streams
in (`StreamParser`, fed token-sized pieces), validates the call (`Tool.validate`). The Ollama
backend also counts the prompt's tokens on every request (to size `num_ctx`), incrementally
(its `TokenCounter` has counted the step before): timed beside them, outside the goal, with
`count_tokens` of the whole prompt for reference.

The conversation: a system prompt, the task, then 19 calls with their results (40 messages),
over ten tools. The completion parsed and the call validated are either the heaviest tool's
(`place_order`: 8 parameters, a nested model, from `bench/bench_validate.py`) or the lightest's
(`get_weather`).
"""

from __future__ import annotations

import cProfile
import datetime
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from agent import Tool, Toolbox, tool
from agent.backends._context import TokenCounter
from agent.llama3 import Message, StreamParser, ToolCall, count_tokens, render_prompt
from bench import _profile
from bench._common import median
from bench.bench_validate import ARGUMENTS, place_order

TODAY = datetime.date(2024, 9, 21)
_PIECE = re.compile(r"<\|[a-z_]+\|>| ?\w+|\s+|[^\w\s]")


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather in a city.

    Args:
        city: The city, e.g. "Paris".
        unit: The temperature unit.
    """
    return f"12 degrees in {city}"


@tool
def web_search(query: str, max_results: int = 5) -> str:
    """Search the web.

    Args:
        query: What to look for.
        max_results: How many results to return.
    """
    return query


@tool
def stock_price(symbol: str) -> float:
    """The last traded price of a stock.

    Args:
        symbol: The ticker, e.g. "AAPL".
    """
    return 1.0


@tool
def convert_currency(amount: float, source: str, target: str) -> float:
    """Convert money between currencies.

    Args:
        amount: How much.
        source: ISO code of the currency held.
        target: ISO code of the currency wanted.
    """
    return amount


@tool
def send_email(to: str, subject: str, body: str, cc: list[str] | None = None) -> str:
    """Send an email.

    Args:
        to: The recipient's address.
        subject: The subject line.
        body: The text of the message.
        cc: Addresses to copy.
    """
    return "sent"


@tool
def create_event(
    title: str, start: str, minutes: int = 60, attendees: list[str] | None = None
) -> str:
    """Put an event in the calendar.

    Args:
        title: What it is.
        start: When it starts, ISO 8601.
        minutes: How long it lasts.
        attendees: Who is invited.
    """
    return title


@tool
def lookup_order(order_id: str, include_items: bool = False) -> str:
    """Find an order by id.

    Args:
        order_id: The order's id.
        include_items: Whether to list its items.
    """
    return order_id


@tool
def translate(text: str, language: str) -> str:
    """Translate text.

    Args:
        text: The text to translate.
        language: The target language, e.g. "German".
    """
    return text


@tool
def read_file(path: str, max_bytes: int = 10_000) -> str:
    """Read a text file.

    Args:
        path: The file's path.
        max_bytes: Read at most this many bytes.
    """
    return path


TOOLS: list[Tool[..., Any]] = [
    get_weather,
    web_search,
    stock_price,
    convert_currency,
    send_email,
    create_event,
    lookup_order,
    translate,
    read_file,
    place_order,
]
_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_weather", {"city": "Paris"}),
    ("web_search", {"query": "best bakeries in Lyon", "max_results": 3}),
    ("stock_price", {"symbol": "AAPL"}),
    ("convert_currency", {"amount": 120.5, "source": "EUR", "target": "USD"}),
    ("lookup_order", {"order_id": "A-10293", "include_items": True}),
    ("translate", {"text": "Where is the station?", "language": "German"}),
    ("read_file", {"path": "/data/notes.txt"}),
]


def conversation(size: int = 40) -> list[Message]:
    """A system prompt, a task, then calls and results until `size` messages."""
    messages = [
        Message(role="system", content="You are a careful assistant. Be brief.", trusted=True),
        Message(role="user", content="Plan my trip to Lyon and order the supplies."),
    ]
    step = 0
    while len(messages) < size:
        name, arguments = _CALLS[step % len(_CALLS)]
        raw = "<|python_tag|>" + json.dumps({"name": name, "parameters": arguments})
        call = ToolCall(name=name, arguments=arguments, id=f"call_{step}")
        messages.append(
            Message(role="assistant", tool_calls=(call,), stop_reason="end_of_message", raw=raw)
        )
        data = [f"item {i} of {name}" for i in range(8)]
        result = json.dumps({"tool": name, "ok": True, "data": data})
        messages.append(Message(role="tool", content=result, tool_call_id=call.id, name=name))
        step += 1
    return messages[:size]


@dataclass(frozen=True, kw_only=True)
class StepCost:
    """Median seconds per step of each part, and of render + parse + validate together."""

    call: str
    render: float
    parse: float
    validate: float
    step: float  # render + parse + validate, the median of their per-iteration sums
    count_tokens: float  # the whole prompt
    count_new: float  # what the backend does: the prompt of the step before already counted
    prompt_chars: int
    prompt_tokens: int
    messages: int
    tools: int


# The call parsed and validated: the heaviest of the ten tools, or the lightest.
HEAVY = ("place_order", ARGUMENTS)
LIGHT = ("get_weather", {"city": "Paris", "unit": "celsius"})


def _workload(
    size: int, call: tuple[str, dict[str, Any]]
) -> tuple[Callable[[], str], Callable[[], None], Callable[[], None]]:
    box = Toolbox(TOOLS)
    specs = box.specs
    names = (*box.names, *box.callable_names)
    messages = conversation(size)
    name, arguments = call
    completion = "<|python_tag|>" + json.dumps({"name": name, "parameters": arguments})
    pieces = _PIECE.findall(completion)
    target = box.resolve(name)

    def render() -> str:
        return render_prompt(messages, specs, model="llama3.1", today=TODAY)

    def parse() -> None:
        parser = StreamParser(tools=names)
        for piece in pieces:
            parser.feed(piece)
        parsed = parser.finish()
        if not parsed.tool_calls or parsed.tool_calls[0].name != name:
            raise AssertionError(f"the completion did not parse as a {name} call: {parsed}")

    def validate() -> None:
        target.validate(arguments)

    return render, parse, validate


async def _count_new(previous: str, prompt: str, iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        counter = TokenCounter()
        await counter.count(previous)  # the step before, as the backend counted it
        started = time.perf_counter()
        await counter.count(prompt)
        samples.append(time.perf_counter() - started)
    return samples


def measure(iterations: int, size: int = 40, call: tuple[str, dict[str, Any]] = HEAVY) -> StepCost:
    render, parse, validate = _workload(size, call)
    prompt = render()
    before = render_prompt(conversation(size - 2), Toolbox(TOOLS).specs, today=TODAY)
    if not prompt.startswith(before):
        raise AssertionError("the prompt does not extend the one of the step before")
    columns: dict[str, list[float]] = {k: [] for k in ("render", "parse", "validate", "count")}
    sums: list[float] = []
    clock = time.perf_counter
    for _ in range(iterations):
        t0 = clock()
        render()
        t1 = clock()
        parse()
        t2 = clock()
        validate()
        t3 = clock()
        count_tokens(prompt)
        t4 = clock()
        columns["render"].append(t1 - t0)
        columns["parse"].append(t2 - t1)
        columns["validate"].append(t3 - t2)
        columns["count"].append(t4 - t3)
        sums.append(t3 - t0)
    return StepCost(
        call=call[0],
        render=median(columns["render"]),
        parse=median(columns["parse"]),
        validate=median(columns["validate"]),
        step=median(sums),
        count_tokens=median(columns["count"]),
        count_new=median(anyio.run(_count_new, before, prompt, iterations)),
        prompt_chars=len(prompt),
        prompt_tokens=count_tokens(prompt),
        messages=size,
        tools=len(TOOLS),
    )


def profile(iterations: int = 200, size: int = 40) -> str:
    """Where render + parse + validate spend their time (cProfile, by own time)."""
    render, parse, validate = _workload(size, HEAVY)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        render()
        parse()
        validate()
    profiler.disable()
    title = f"render + parse + validate ({HEAVY[0]}), {iterations} times, cProfile:"
    return _profile.report(profiler, title)
