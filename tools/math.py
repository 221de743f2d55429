"""Exact math for the model: `wolfram_alpha` (Llama's trained name) and `calculate`.

Both use `evaluate`, a whitelist evaluator over Python's AST (see `tools._calc`): exact integers,
floats, `+ - * / // % **`, comparisons and the usual functions. A cost model charges the whole
expression's big-integer work to one budget and refuses it before the step that would cross it,
so a call takes about 30 ms at most, writing the result included.

The tools are plain functions, so they run in a worker thread: a big-integer operation holds the
GIL while it runs and cannot be interrupted, so on the event loop an evaluation would stall every
other run for its whole length; in a thread the loop waits at most for one operation (a few ms,
15 at worst). A subprocess would isolate it fully but costs more than the worst evaluation (this
package alone takes ~0.4 s of CPU to import), and the budget already bounds what a kill would stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from agent import Tool, tool
from agent.toolkit import ToolsetContext

from ._calc import ACCEPTED, MAX_CHARS, Number, check_length, evaluate, format_value
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

_TIMEOUT = 5.0  # evaluation is bounded to ~30 ms of CPU; this only guards against the unforeseen
# One evaluation thread per event loop: with several, the GIL may pass from one to another while
# the loop waits behind both; calls queue instead (30 ms each at worst, microseconds as a rule).
_thread: RunVar[anyio.CapacityLimiter] = RunVar("llama_agent_math_thread")


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
        return await _answer(query)

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
        return await _answer(expression)

    return pick(names, wolfram_alpha, calculate)


async def _answer(expression: str) -> str:
    check_length(expression)  # before any other work, even stripping
    try:
        limiter = _thread.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(1)
        _thread.set(limiter)
    # Abandoned on timeout or cancellation: the thread then ends within its budget by itself.
    return await anyio.to_thread.run_sync(
        _evaluate_and_format, expression, limiter=limiter, abandon_on_cancel=True
    )


def _evaluate_and_format(expression: str) -> str:
    # Models often append '=' or '= ?' the way they would ask a person.
    return format_value(evaluate(expression.strip().rstrip("=? \t")))
