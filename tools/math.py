"""Exact math for the model: `wolfram_alpha` (Llama's trained name) and `calculate`.

Both use `evaluate`, a whitelist evaluator over Python's AST (see `tools._calc`): exact integers,
floats, `+ - * / // % **`, comparisons and the usual functions, with every costly input refused in
well under a millisecond.
"""

from __future__ import annotations

from typing import Any

from agent import Tool, tool
from tools._calc import ACCEPTED, MAX_CHARS, Number, evaluate, format_value
from tools._names import Names, pick

__all__ = ["ACCEPTED", "Number", "evaluate", "format_value", "math_tools"]

_TIMEOUT = 5.0  # evaluation is bounded to milliseconds; this only guards against the unforeseen


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
