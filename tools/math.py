"""Exact math for the model: `wolfram_alpha` (Llama's trained name) and `calculate`.

Both use `evaluate`, a whitelist evaluator over Python's AST (see `tools._calc`): exact integers,
floats, `+ - * / // % **`, comparisons and the usual functions, with every costly input refused in
well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent import Tool, tool
from agent.toolkit import ToolsetContext

from ._calc import ACCEPTED, MAX_CHARS, Number, evaluate, format_value
from ._names import Names, default_names, pick

__all__ = [
    "ACCEPTED",
    "MathSettings",
    "Number",
    "evaluate",
    "format_value",
    "math_tools",
    "math_toolset",
]

_TIMEOUT = 5.0  # evaluation is bounded to milliseconds; this only guards against the unforeseen


@dataclass(frozen=True, kw_only=True)
class MathSettings:
    """The math tools (`wolfram_alpha`, `calculate`)."""

    names: Names | None = None
    """`native`: `wolfram_alpha`, the name Llama was trained on (`Tools: wolfram_alpha` in the
    system prompt); `custom`: `calculate`, an ordinary tool with a JSON schema; `both`. Unset:
    `native` for Llama 3.1 and 3.3, `custom` for 3.2."""


def math_toolset(settings: MathSettings, context: ToolsetContext) -> list[Tool[..., Any]]:
    """The math tools a config's `math` entry asks for."""
    return math_tools(names=settings.names or default_names(context.family, trained=False))


def math_tools(*, names: Names = "both") -> list[Tool[..., Any]]:
    """The `wolfram_alpha` built-in and the `calculate` custom tool, both backed by `evaluate`.

    Args:
        names: `"both"` (the default), `"native"` (only `wolfram_alpha`, Llama 3.1's trained
            name) or `"custom"` (only `calculate`). Offering one avoids two tools that do the
            same thing in a small model's prompt; a config picks by model (see `tools`).
    """

    @tool(name="wolfram_alpha", builtin="wolfram_alpha", timeout=_TIMEOUT)
    async def wolfram_alpha(query: str) -> str:
        """Evaluate a math expression exactly.

        Args:
            query: An arithmetic expression such as `2^64 - 1` or `sqrt(2) * pi`.
        """
        return _answer(query)

    @tool(
        name="calculate",
        timeout=_TIMEOUT,
        description=(
            "Evaluate an arithmetic expression exactly (integers of any size) and return the "
            f"value. Accepts {ACCEPTED}. Up to {MAX_CHARS} characters."
        ),
    )
    async def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: e.g. `factorial(25) / 2**10`, `comb(52, 5)`, `log(1000, 10) > 2.9`.
        """
        return _answer(expression)

    return pick(names, wolfram_alpha, calculate)


def _answer(expression: str) -> str:
    # Models often append '=' or '= ?' the way they would ask a person.
    return format_value(evaluate(expression.strip().rstrip("=? \t")))
