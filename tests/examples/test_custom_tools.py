"""`examples/custom_tools.py`: pydantic arguments and an injected `RunContext`, end to end."""

from __future__ import annotations

from typing import Any

import pytest

from agent import ToolCallRejected, ToolCallValidated
from agent.testing import OllamaEmulator, sequence, tool_call_text

from .conftest import load_example

pytestmark = pytest.mark.anyio

shop_example = load_example("custom_tools.py")

PARIS = {"street": "1 Rue de Rivoli", "city": "Paris", "country": "France"}


def new_shop() -> Any:
    """A shop with 12 mugs and 3 teapots (the example's `Shop`)."""
    return shop_example.Shop(customer="ada@example.com", stock={"mug": 12, "teapot": 3})


async def test_an_order_is_validated_typed_and_placed_for_the_programs_customer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shop = new_shop()
    model = sequence(
        tool_call_text("check_stock", {"sku": "teapot"}),
        # A slip ("2" for 2) that validation fixes, and a nested address.
        tool_call_text(
            "place_order",
            {"items": [{"sku": "mug", "quantity": "2"}, {"sku": "teapot"}], "ship_to": PARIS},
        ),
        "Your order #1 is on its way.<|eot_id|>",
    )
    async with OllamaEmulator(model) as emu:
        result = await shop_example.main("Two mugs and a teapot to Paris.", host=emu.url, shop=shop)

    assert result.status == "answered"
    assert capsys.readouterr().out == "Your order #1 is on its way.\n"
    [order] = shop.orders
    assert order.customer == "ada@example.com"  # from deps, never from the model
    assert [(i.sku, i.quantity) for i in order.items] == [("mug", 2), ("teapot", 1)]
    assert isinstance(order.ship_to, shop_example.Address)
    assert order.ship_to.city == "Paris"
    assert not order.express
    assert shop.stock == {"mug": 10, "teapot": 2}
    tool_results = [m.content for m in result.messages if m.role == "tool"]
    assert tool_results == [
        "3 teapot(s) in stock",
        "order #1 placed: 2 x mug, 1 x teapot to Paris, France",
    ]
    # The model is shown the tools and their parameters, never the injected context.
    first_prompt = emu.completions[0].prompt or ""
    assert '"name": "place_order"' in first_prompt
    assert '"ship_to": {' in first_prompt
    assert "ctx" not in first_prompt
    assert "RunContext" not in first_prompt


async def test_invalid_arguments_go_back_to_the_model_which_fixes_its_call() -> None:
    shop = new_shop()
    model = sequence(
        tool_call_text(
            "place_order", {"items": [{"sku": "spoon", "quantity": 0}], "ship_to": PARIS}
        ),
        tool_call_text("place_order", {"items": [{"sku": "mug"}], "ship_to": PARIS}),
        "Done: order #1.<|eot_id|>",
    )
    async with OllamaEmulator(model) as emu:
        events = []
        async with (
            shop_example.Agent(
                "llama3.1", tools=[shop_example.check_stock, shop_example.place_order], host=emu.url
            ) as agent,
            agent.stream("A mug to Paris.", deps=shop) as stream,
        ):
            events = [event async for event in stream]

    [rejected] = [e for e in events if isinstance(e, ToolCallRejected)]
    assert rejected.reason == "invalid_arguments"
    assert "'items[0].sku' must be one of" in rejected.error
    assert "'items[0].quantity' must be at least 1" in rejected.error
    # The model saw that message as the call's result, then made a valid call.
    second_prompt = emu.completions[1].prompt or ""
    assert rejected.error in second_prompt
    [validated] = [e for e in events if isinstance(e, ToolCallValidated)]
    assert validated.arguments["items"] == [{"sku": "mug"}]
    [order] = shop.orders
    assert [(i.sku, i.quantity) for i in order.items] == [("mug", 1)]  # the model's default


async def test_a_tool_error_is_told_to_the_model_and_nothing_is_ordered() -> None:
    shop = new_shop()
    # Each line alone fits the stock of 3; together they do not.
    too_many = {
        "items": [{"sku": "teapot", "quantity": 2}, {"sku": "teapot", "quantity": 2}],
        "ship_to": PARIS,
    }
    model = sequence(
        tool_call_text("place_order", too_many), "Sorry, not enough teapots.<|eot_id|>"
    )
    async with OllamaEmulator(model) as emu:
        result = await shop_example.main("Four teapots to Paris.", host=emu.url, shop=shop)

    assert result.answer == "Sorry, not enough teapots."
    [tool_message] = [m for m in result.messages if m.role == "tool"]
    assert "not enough stock for: teapot" in tool_message.content
    assert "not enough stock for: teapot" in (emu.completions[1].prompt or "")
    assert shop.orders == []
    assert shop.stock["teapot"] == 3
