"""Latency of the built-in tools: the Python sandbox (cold, warm pool) and the math evaluator.

    python bench/bench_tools.py [--runs 40]

Cold: every run starts bubblewrap and an interpreter. Warm: a pool of 2 started interpreters,
with a pause between runs (as between the model's calls) and back to back (the pool cannot refill
fast enough). The times are from `Sandbox.run` call to return, `print(1)` as the snippet.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import statistics
import time
import timeit
import warnings

import anyio

from llama_agent_tools.code import Sandbox
from llama_agent_tools.math import evaluate, format_value

MATH = [
    "2 + 2",
    "sqrt(2) * pi",
    "2**100",
    "factorial(25) / 2**10",
    "comb(52, 5) * 1.5 - log10(1000)",
    "9**9**9**9",  # refused
    "factorial(10**8)",  # refused
    "'a' * 10**10",  # refused
]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


async def sandbox_latency(sandbox: Sandbox, runs: int, pause: float) -> tuple[float, float]:
    samples = []
    await sandbox.run("print(1)")  # the first run starts the pool
    for _ in range(runs):
        await anyio.sleep(pause)
        start = time.perf_counter()
        result = await sandbox.run("print(1)")
        samples.append((time.perf_counter() - start) * 1000)
        assert result.stdout == "1\n", result
    return percentiles(samples)


async def bench_sandbox(runs: int) -> None:
    modes = ["bwrap", "none"] if shutil.which("bwrap") else ["none"]
    print(f"{'sandbox':<36} {'p50 ms':>8} {'p95 ms':>8}")
    for mode in modes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cold = Sandbox(mode=mode, pool_size=0)  # type: ignore[arg-type]
            warm = Sandbox(mode=mode, pool_size=2)  # type: ignore[arg-type]
        cases = [
            ("cold", cold, 0.05),
            ("warm pool of 2, 150 ms apart", warm, 0.15),
            ("warm pool of 2, back to back", warm, 0.0),
        ]
        for label, sandbox, pause in cases:
            p50, p95 = await sandbox_latency(sandbox, runs, pause)
            print(f"{mode + ' ' + label:<36} {p50:8.1f} {p95:8.1f}")
        await cold.aclose()
        await warm.aclose()
    print()


def bench_math() -> None:
    print(f"{'math expression':<36} {'µs':>8}")
    for expression in MATH:

        def once(expression: str = expression) -> None:
            with contextlib.suppress(Exception):  # the refusals are timed too
                format_value(evaluate(expression))

        number = 2000
        seconds = min(timeit.repeat(once, number=number, repeat=3)) / number
        print(f"{expression:<36} {seconds * 1e6:8.1f}")


def main() -> None:
    logging.getLogger("tools.code").setLevel(logging.ERROR)  # sandbox "none" warns on every run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    anyio.run(bench_sandbox, args.runs)
    bench_math()


if __name__ == "__main__":
    main()
