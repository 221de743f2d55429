"""Typed custom tools: pydantic arguments, and a context the runtime injects.

A small shop assistant with two tools, `check_stock` and `place_order`. Each tool's JSON schema
comes from its type hints and its descriptions from its docstring. Every call the model writes is
validated against that schema before the function runs (with safe fixes such as `"2"` for `2`),
so `place_order` receives real `Item` and `Address` objects, never unchecked JSON. An invalid
call goes back to the model with the offending field named, and it tries again.

Llama 3.1's native tool format shows the model each parameter's name and description, not its
type or nested fields (Meta's own template drops them). So the docstrings below say in words what
an item and an address look like; the full schema is still enforced on every call.

What the model must not control (who the customer is, the stock, the order book) reaches the
tools through `RunContext`: the program passes it as `deps=` and the runtime injects it into
every tool parameter annotated `RunContext[...]`. That parameter is never shown to the model.

Run it against Ollama (`ollama pull llama3.1` first; `OLLAMA_HOST` is honoured):

    python examples/custom_tools.py "Send two mugs and a teapot to 1 Rue de Rivoli, Paris, France"
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Literal

import anyio
from pydantic import BaseModel, Field

from agent import Agent, RunContext, RunResult, tool
from agent.errors import ToolExecutionError

Sku = Literal["mug", "teapot", "kettle"]


class Item(BaseModel):
    """One line of an order."""

    sku: Sku = Field(description="The product.")
    quantity: int = Field(1, ge=1, le=20, description="How many, from 1 to 20.")


class Address(BaseModel):
    """Where an order goes."""

    street: str
    city: str
    country: str


@dataclass(frozen=True, kw_only=True)
class Order:
    """An order as the shop records it."""

    number: int
    customer: str
    items: tuple[Item, ...]
    ship_to: Address
    express: bool


@dataclass(kw_only=True)
class Shop:
    """The run's dependencies: handed to the tools, invisible to the model."""

    customer: str
    stock: dict[str, int]
    orders: list[Order] = field(default_factory=list)


# Async tools run on the event loop, so calls of one step (which run concurrently) never race on
# `Shop`; a plain `def` would run in a worker thread.
@tool
async def check_stock(ctx: RunContext[Shop], sku: Sku) -> str:
    """Say how many of a product are in stock.

    Args:
        sku: The product to look up: mug, teapot or kettle.
    """
    return f"{ctx.deps.stock.get(sku, 0)} {sku}(s) in stock"


@tool(retries=2)
async def place_order(
    ctx: RunContext[Shop],
    items: Annotated[list[Item], Field(min_length=1)],
    ship_to: Address,
    express: bool = False,
) -> str:
    """Place an order for the current customer.

    Args:
        items: What to send: a list of items, each with sku (mug, teapot or kettle) and
            quantity (1 to 20, default 1).
        ship_to: The delivery address, with street, city and country.
        express: true to ship by express courier (default false).
    """
    shop = ctx.deps
    wanted = Counter[str]()
    for item in items:
        wanted[item.sku] += item.quantity
    short = [sku for sku, count in wanted.items() if shop.stock.get(sku, 0) < count]
    if short:
        # A ToolExecutionError goes back to the model as the call's result: it can change the
        # order, or tell the customer.
        raise ToolExecutionError(f"not enough stock for: {', '.join(short)}; order fewer")
    for sku, count in wanted.items():
        shop.stock[sku] -= count
    order = Order(
        number=len(shop.orders) + 1,
        customer=shop.customer,  # from the program, not from the model
        items=tuple(items),
        ship_to=ship_to,
        express=express,
    )
    shop.orders.append(order)
    lines = ", ".join(f"{i.quantity} x {i.sku}" for i in items)
    return f"order #{order.number} placed: {lines} to {ship_to.city}, {ship_to.country}"


SYSTEM = (
    "You are the assistant of a small tea shop. Check the stock before you order, place orders "
    "with place_order, and tell the customer the order number."
)


async def main(task: str, *, host: str | None = None, shop: Shop | None = None) -> RunResult:
    """Run one task for a customer of a shop (`host`: Ollama's URL, else `OLLAMA_HOST`)."""
    shop = shop or Shop(customer="ada@example.com", stock={"mug": 12, "teapot": 3, "kettle": 0})
    async with Agent(
        "llama3.1", tools=[check_stock, place_order], system=SYSTEM, host=host
    ) as agent:
        result = await agent.run(task, deps=shop)
    for message in result.new_messages:
        for call in message.tool_calls:
            print(f"  -> {call.name}({dict(call.arguments)})", file=sys.stderr)
    print(result.answer or f"[{result.status}] {result.error or ''}")
    return result


if __name__ == "__main__":
    anyio.run(main, " ".join(sys.argv[1:]) or "Send two mugs to 1 Rue de Rivoli, Paris, France")
