"""A pool of 4 emulated hosts, one killed mid-benchmark: `python -m bench.pool_failover`.

Each round runs the same workload twice on fresh emulators: `RUNS` concurrent three-step runs
(two tool calls, then an answer; every request waits `LATENCY` before its first chunk, then
streams at `TOKEN_RATE`) through a `PoolBackend` of 4 Ollama emulators, each in its own process.
In the baseline no host fails; in the other case host 0's process is killed (SIGKILL: the
streams in flight cut, then connections refused) once `KILL_AT` of the baseline's wall time has
passed. Printed, median over the rounds: runs completed, runs moved to another host, wall time,
run latency p50 / p95, and the latency of the moved runs, each against the baseline of the same
round (loopback only).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio

from agent import Agent, Limits, tool
from agent.backends import GenerateOptions, OllamaBackend, PoolBackend, Retries
from agent.testing import call_tools
from bench._common import Emulator, emulator_process

HOSTS = 4
RUNS = 4  # one per host: each host's prompt cache holds its run (the emulator keeps one)
LATENCY = 0.5
TOKEN_RATE = 30.0
KILL_AT = 0.3


@tool
def lookup(key: str) -> str:
    """Look a key up.

    Args:
        key: What to look up.
    """
    return f"value of {key}"


SCRIPT = call_tools(
    [("lookup", {"key": "a"}), ("lookup", {"key": "b"})],
    then="Both values are known now, and here is a sentence long enough to stream for a while.",
)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    wall: float
    latencies: dict[int, float]  # by run
    moved: list[int]  # the runs that changed host
    completed: int
    moves: int


@contextlib.contextmanager
def emulators() -> Iterator[list[Emulator]]:
    script = "bench.pool_failover:SCRIPT"
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                emulator_process(
                    "--script", script, "--latency", str(LATENCY), "--token-rate", str(TOKEN_RATE)
                )
            )
            for _ in range(HOSTS)
        ]


async def warm(backend: OllamaBackend) -> None:
    """One request, so that each emulator has loaded its tokenizer before the clock starts."""
    prompt = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    async for _ in backend.generate(prompt, model="llama3.1", options=GenerateOptions()):
        pass


async def workload(kill_after: float | None) -> Outcome:
    with emulators() as emus:
        retries = Retries(backoff_base=0.01, backoff_max=0.05)
        backends = [OllamaBackend(e.url, retries=retries) for e in emus]
        async with anyio.create_task_group() as group:
            for backend in backends:
                group.start_soon(warm, backend)
        pool = PoolBackend(backends)
        agent = Agent("llama3.1", tools=[lookup], backend=pool, limits=Limits(max_steps=5))
        latencies: dict[int, float] = {}
        moved: list[int] = []
        completed = 0

        async def one(i: int) -> None:
            nonlocal completed
            start = time.perf_counter()
            result = await agent.run(f"Look up a and b (run {i}).")
            took = time.perf_counter() - start
            latencies[i] = took
            completed += result.status == "answered" and result.answer.startswith("Both")
            if result.warnings:
                moved.append(i)

        async def kill() -> None:
            assert kill_after is not None
            await anyio.sleep(kill_after)
            os.kill(emus[0].pid, signal.SIGKILL)

        start = time.perf_counter()
        async with pool, agent, anyio.create_task_group() as group:
            if kill_after is not None:
                group.start_soon(kill)
            async with anyio.create_task_group() as runs:
                for i in range(RUNS):
                    runs.start_soon(one, i)
            wall = time.perf_counter() - start
        return Outcome(
            wall=wall,
            latencies=latencies,
            moved=moved,
            completed=completed,
            moves=pool.moves,
        )


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main(rounds: int) -> None:
    rows: list[dict[str, float]] = []
    await workload(None)  # warm-up: the tokenizer loads, the emulators' code paths run once
    for _ in range(rounds):
        base = await workload(None)
        hit = await workload(base.wall * KILL_AT)
        # Each moved run against the same run (same task, same host count) of the baseline.
        added = [hit.latencies[i] - base.latencies[i] for i in hit.moved]
        rows.append(
            {
                "completed": hit.completed,
                "moved_runs": len(hit.moved),
                "moves": hit.moves,
                "base_wall": base.wall,
                "wall_ratio": hit.wall / base.wall,
                "p50_ratio": p([*hit.latencies.values()], 0.5) / p([*base.latencies.values()], 0.5),
                "p95_ratio": p([*hit.latencies.values()], 0.95)
                / p([*base.latencies.values()], 0.95),
                "base_p50": p([*base.latencies.values()], 0.5),
                "moved_added": statistics.median(added) if added else float("nan"),
                "moved_added_max": max(added, default=float("nan")),
                "base_completed": base.completed,
            }
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"{HOSTS} hosts, {RUNS} concurrent 3-step runs, {rounds} rounds (medians)")
    print(
        f"  baseline: {med('base_completed'):.0f}/{RUNS} completed, wall {med('base_wall'):.2f} s"
    )
    print(
        f"  host 0 killed at {KILL_AT:.0%} of the baseline's wall: "
        f"{med('completed'):.0f}/{RUNS} completed, {med('moved_runs'):.0f} runs moved "
        f"({med('moves'):.0f} requests moved or re-placed)"
    )
    print(
        f"  wall {med('wall_ratio'):.2f}x the baseline; run latency p50 {med('p50_ratio'):.2f}x, "
        f"p95 {med('p95_ratio'):.2f}x"
    )
    print(
        f"  a moved run took {med('moved_added') * 1000:+.0f} ms (median; worst "
        f"{med('moved_added_max') * 1000:+.0f} ms) against the same run in the baseline, "
        f"whose run latency p50 is {med('base_p50') * 1000:.0f} ms"
    )
    for n, row in enumerate(rows, 1):
        print(
            f"  round {n}: baseline wall {row['base_wall']:.2f} s, killed "
            f"{row['wall_ratio']:.2f}x, {row['moved_runs']:.0f} moved, "
            f"added {row['moved_added'] * 1000:+.0f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the pool's warnings, one per move: not here
    anyio.run(main, args.rounds)
