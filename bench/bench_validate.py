"""Microseconds to validate and convert one call's arguments.

The tool has 8 parameters, one of them a nested pydantic model (an order with a list of items
and an address). Run: `python bench/bench_validate.py`.
"""

from __future__ import annotations

import statistics
import timeit
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent import toolkit as tk


class Item(BaseModel):
    sku: str
    qty: int = Field(1, ge=1)


class Address(BaseModel):
    street: str
    city: str
    country: Literal["FR", "DE", "US"] = "FR"


class Order(BaseModel):
    items: list[Item]
    ship_to: Address
    gift: bool = False


@tk.tool
def place_order(
    customer: str,
    order: Order,
    priority: Literal["low", "normal", "high"] = "normal",
    max_price: float = 100.0,
    quantity_cap: Annotated[int, Field(ge=1, le=100)] = 10,
    tags: list[str] | None = None,
    note: str | None = None,
    confirm: bool = True,
) -> str:
    """Place an order."""
    return customer


ARGUMENTS = {
    "customer": "ada",
    "order": {
        "items": [{"sku": "pen", "qty": 2}, {"sku": "ink"}],
        "ship_to": {"street": "1 Rue X", "city": "Paris", "country": "FR"},
        "gift": True,
    },
    "priority": "high",
    "max_price": 42.5,
    "quantity_cap": 5,
    "tags": ["office", "urgent"],
    "note": "leave at the door",
    "confirm": True,
}
# Two slips the model makes: a digit string and a boolean string.
SLIPPED = {**ARGUMENTS, "quantity_cap": "5", "confirm": "true"}


def measure(label: str, fn: object, number: int = 2000, repeat: int = 7) -> None:
    times = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    per_call = [t / number * 1e6 for t in times]
    print(
        f"{label:<52} best {min(per_call):7.1f} µs   median {statistics.median(per_call):7.1f} µs"
    )


def main() -> None:
    call = place_order.validate(ARGUMENTS)
    assert isinstance(call.values["order"], Order)
    assert not call.coercions
    assert len(place_order.validate(SLIPPED).coercions) == 2
    validator = place_order._checker._validator  # the compiled Draft 2020-12 validator
    converter = place_order._checker._convert
    assert converter is not None

    print(f"tool: {place_order.name}, {len(place_order.parameters['properties'])} parameters")
    measure("validate + convert (Tool.validate)", lambda: place_order.validate(ARGUMENTS))
    measure(
        "  of which JSON schema validation (jsonschema)",
        lambda: list(validator.iter_errors(ARGUMENTS)),
    )
    measure("  of which conversion to Python values (pydantic)", lambda: converter(dict(ARGUMENTS)))
    measure("validate + convert with 2 coercions", lambda: place_order.validate(SLIPPED))


if __name__ == "__main__":
    main()
