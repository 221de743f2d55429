"""Section 5: the built-in tools and argument validation.

Reuses `bench/bench_tools.py` (the sandbox timings, the math expressions) and
`bench/bench_validate.py` (the eight-parameter `place_order` tool).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import statistics
import timeit
import warnings
from collections.abc import Callable
from typing import Any

import anyio

from agent.errors import InvalidArgumentsError
from bench._common import SectionResult, Table, us
from bench._step_cost import get_weather
from bench.bench_tools import MATH, sandbox_latency
from bench.bench_validate import ARGUMENTS, SLIPPED, place_order
from llama_agent_tools.code import Sandbox
from llama_agent_tools.math import evaluate, format_value


async def _sandbox(runs: int) -> list[dict[str, Any]]:
    mode = "bwrap" if shutil.which("bwrap") else "none"
    # Sandbox "none" warns on every run, through warnings and the log.
    logging.getLogger("tools.code").setLevel(logging.ERROR)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = Sandbox(mode=mode, pool_size=0)  # type: ignore[arg-type]
        warm = Sandbox(mode=mode, pool_size=2)  # type: ignore[arg-type]
        try:
            for label, sandbox, pause in [
                ("cold (new interpreter per run)", cold, 0.05),
                ("warm pool of 2, runs 150 ms apart", warm, 0.15),
                ("warm pool of 2, back to back", warm, 0.0),
            ]:
                p50, p95 = await sandbox_latency(sandbox, runs, pause)
                out.append({"mode": mode, "case": label, "p50_ms": p50, "p95_ms": p95})
        finally:
            await cold.aclose()
            await warm.aclose()
    return out


def _per_call(fn: Callable[[], object], number: int) -> float:
    times = timeit.repeat(fn, number=number, repeat=5)
    return statistics.median(times) / number


def _math(number: int) -> list[dict[str, Any]]:
    out = []
    for expression in MATH:

        def once(expression: str = expression) -> None:
            with contextlib.suppress(Exception):  # the refusals are timed too
                format_value(evaluate(expression))

        try:
            format_value(evaluate(expression))
            outcome = "value"
        except Exception as exc:
            outcome = f"refused ({type(exc).__name__})"
        seconds = _per_call(once, number)
        out.append({"expression": expression, "seconds": seconds, "outcome": outcome})
    return out


def _validation(number: int) -> list[dict[str, Any]]:
    def rejected() -> None:
        with contextlib.suppress(InvalidArgumentsError):
            place_order.validate({**ARGUMENTS, "priority": "urgent", "order": {"items": "pen"}})

    cases: list[tuple[str, Callable[[], object]]] = [
        ("get_weather (2 parameters)", lambda: get_weather.validate({"city": "Paris"})),
        ("place_order (8 parameters, nested model)", lambda: place_order.validate(ARGUMENTS)),
        ("place_order with 2 coercions", lambda: place_order.validate(SLIPPED)),
        ("place_order rejected (2 errors)", rejected),
    ]
    return [{"case": label, "seconds": _per_call(fn, number)} for label, fn in cases]


def run(*, quick: bool) -> SectionResult:
    sandbox = anyio.run(_sandbox, 3 if quick else 30)
    math = _math(20 if quick else 1000)
    validation = _validation(20 if quick else 1000)
    result = SectionResult(key="tools", title="5. Tools")
    result.tables = [
        Table(
            title=f"Code sandbox, `print(1)` from call to result ({sandbox[0]['mode']})",
            headers=["case", "p50", "p95"],
            rows=[[s["case"], f"{s['p50_ms']:.1f} ms", f"{s['p95_ms']:.1f} ms"] for s in sandbox],
        ),
        Table(
            title="Math evaluation (`tools.math.evaluate` + `format_value`), per call",
            headers=["expression", "time", "outcome"],
            rows=[[f"`{m['expression']}`", us(m["seconds"]), m["outcome"]] for m in math],
        ),
        Table(
            title="Argument validation (`Tool.validate`: JSON schema, coercions, conversion)",
            headers=["case", "time"],
            rows=[[v["case"], us(v["seconds"])] for v in validation],
        ),
    ]
    result.data = {"sandbox": sandbox, "math": math, "validation": validation}
    if sandbox[0]["mode"] == "none":
        result.notes.append("bubblewrap is not installed here: the sandbox ran without isolation.")
    return result
