"""Section 7 (on request only: `python -m bench --only load`): 10,000 concurrent runs in one
process, then a soak of 20,000 runs in waves, resident memory at the start, middle and end.

Issue 13 asks that 10,000 concurrent five-step runs complete in one process, every answer
right; issue 14 that a long series of runs leaves memory flat. Each part runs in a fresh child
process (`python -m bench._load ...`) against a fresh emulator process (the five-step chain,
`bench._chain`), with `Agent.run` on an `OllamaBackend` with the default pool (512 connections:
the rest of the runs queue for one, as they would for Ollama's own queue) and a connect timeout
of 60 s (`CONNECT_TIMEOUT`).

* **load**: one warm-up run, then every run started at once; resident memory (VmRSS) after the
  warm-up (start), when half of the runs have finished (middle) and when all have (end), and
  the peak (VmHWM).
* **soak**: waves of runs (each wave started at once, the next when it is done); resident
  memory after the first wave (start: pools, caches and the allocator warmed), after the
  middle wave and after the last (end), after a `gc.collect()` each time. Memory that grows
  with the number of runs done, not with the number running, shows as end above start.

Every run's answer is checked (`bench._chain.check_answer`); a run that fails or answers
wrong is counted, with its error, never retried.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import subprocess
import sys
import time
from typing import Any

from bench._common import ROOT, Goal, SectionResult, Table, child_env, emulator_process, mb
from bench._common import rss_bytes as _rss

LOAD_RUNS = 10_000
SOAK_RUNS = 20_000
SOAK_WAVE = 1_000
LATENCY = 0.2  # per request, as in the concurrency section
QUICK = {"load": 300, "soak": 600, "wave": 100, "latency": 0.05}
CHUNK_CHARS = 16  # as in the concurrency section
CONNECT_TIMEOUT = 60.0
"""`Timeouts.connect` of the parts' backend. With the default 5 s, a burst of 512 new connections
to one emulator process on a loaded machine outlasts it (measured: 234 of 10,000 runs failed)."""
TIMEOUT = 3600  # seconds a part may take before it is stopped (a loaded machine is slow)
SOAK_GROWTH = 0.10  # end at most this much above start (+ 5 MB for the allocator's noise)


# --- the child ----------------------------------------------------------------------------------


class _Tally:
    """What the runs came to: right answers, and failures by kind."""

    def __init__(self) -> None:
        self.right = 0
        self.failed: collections.Counter[str] = collections.Counter()

    @property
    def finished(self) -> int:
        return self.right + sum(self.failed.values())


async def _one(agent: Any, tally: _Tally) -> None:
    from bench import _chain as chain

    try:
        await chain.agent_run(agent)
    except Exception as exc:  # counted and shown: a load test reports every failure
        tally.failed[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
    else:
        tally.right += 1


def _agent(url: str) -> Any:
    from agent import Agent
    from agent.backends import OllamaBackend, Timeouts
    from bench import _chain as chain

    backend = OllamaBackend(url, timeouts=Timeouts(connect=CONNECT_TIMEOUT))
    return Agent(chain.MODEL, tools=[chain.add], backend=backend, today=chain.TODAY), backend


async def _load(url: str, runs: int) -> dict[str, Any]:
    import anyio

    from bench import _chain as chain

    agent, backend = _agent(url)
    tally = _Tally()
    samples: dict[str, int] = {}
    try:
        await chain.agent_run(agent)  # warm up: tokenizer, /api/show, the first connection
        samples["start"] = _rss()[0]

        async def one() -> None:
            await _one(agent, tally)
            if tally.finished == runs // 2:
                samples["middle"] = _rss()[0]

        cpu = time.process_time()
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(runs):
                group.start_soon(one)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        samples["end"], peak = _rss()
    finally:
        await agent.aclose()
        await backend.aclose()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": samples,
        "rss_peak": peak,
        "right": tally.right,
        "failed": dict(tally.failed),
    }


async def _soak(url: str, runs: int, wave: int) -> dict[str, Any]:
    import anyio

    from bench import _chain as chain

    agent, backend = _agent(url)
    tally = _Tally()
    waves = max(1, runs // wave)
    samples: list[tuple[int, int]] = []  # (runs finished, RSS) after each wave
    try:
        await chain.agent_run(agent)
        cpu = time.process_time()
        started = time.perf_counter()
        for _ in range(waves):
            async with anyio.create_task_group() as group:
                for _ in range(wave):
                    group.start_soon(_one, agent, tally)
            gc.collect()
            samples.append((tally.finished, _rss()[0]))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        peak = _rss()[1]
    finally:
        await agent.aclose()
        await backend.aclose()
    middle = samples[(len(samples) - 1) // 2]
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": {"start": samples[0][1], "middle": middle[1], "end": samples[-1][1]},
        "rss_after": samples,
        "rss_peak": peak,
        "waves": waves,
        "wave": wave,
        "right": tally.right,
        "failed": dict(tally.failed),
    }


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._load")
    parser.add_argument("--mode", choices=("load", "soak"), required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--wave", type=int, default=SOAK_WAVE)
    parser.add_argument("--url", required=True)
    args = parser.parse_args(argv)
    import anyio

    if args.mode == "load":
        outcome = anyio.run(_load, args.url, args.runs)
    else:
        outcome = anyio.run(_soak, args.url, args.runs, args.wave)
    print(json.dumps(outcome), flush=True)
    return 0


# --- the parent ---------------------------------------------------------------------------------


def run_part(mode: str, runs: int, *, wave: int = SOAK_WAVE, latency: float = LATENCY) -> Any:
    """One part in a fresh child process, against a fresh emulator process."""
    arguments = ("--script", "bench._chain:chain", "--latency", str(latency))
    with emulator_process(*arguments, "--chunk-chars", str(CHUNK_CHARS)) as server:
        server_cpu = server.cpu_seconds()
        command = [sys.executable, "-m", "bench._load", "--mode", mode, "--runs", str(runs)]
        command += ["--wave", str(wave), "--url", server.url]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=ROOT,
            timeout=TIMEOUT,
            check=False,
        )
        server_cpu = server.cpu_seconds() - server_cpu
    if done.returncode != 0:
        raise RuntimeError(f"{mode} x {runs} failed:\n{done.stderr[-3000:]}")
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    outcome.update(mode=mode, runs=runs, latency=latency, emulator_cpu=server_cpu)
    return outcome


def _row(label: str, o: dict[str, Any]) -> list[str]:
    requests = o["runs"] * 6
    failed = sum(o["failed"].values())
    return [
        label,
        f"{o['right']} / {o['runs']}",
        str(failed),
        f"{o['wall']:.1f} s",
        f"{o['cpu']:.1f} s",
        f"{o['cpu'] / requests * 1e6:.0f} µs",
        f"{o['emulator_cpu']:.1f} s",
        mb(o["rss"]["start"]),
        mb(o["rss"]["middle"]),
        mb(o["rss"]["end"]),
        mb(o["rss_peak"]),
    ]


def run(*, quick: bool) -> SectionResult:
    load_runs = QUICK["load"] if quick else LOAD_RUNS
    soak_runs = QUICK["soak"] if quick else SOAK_RUNS
    wave = QUICK["wave"] if quick else SOAK_WAVE
    latency = QUICK["latency"] if quick else LATENCY
    load = run_part("load", load_runs, latency=latency)
    soak = run_part("soak", soak_runs, wave=wave, latency=latency)
    return section(load, soak)


def section(load: dict[str, Any], soak: dict[str, Any]) -> SectionResult:
    """The section from the outcomes of its two parts (`run_part`)."""
    load_runs, soak_runs, wave = load["runs"], soak["runs"], soak["wave"]
    latency = load["latency"]
    table = Table(
        title=(
            f"{load_runs:,} concurrent five-step runs in one process, then {soak_runs:,} runs in "
            f"waves of {wave:,}; {latency * 1000:.0f} ms per request"
        ),
        headers=[
            "part",
            "right answers",
            "failed",
            "wall",
            "client CPU",
            "client CPU / request",
            "emulator CPU",
            "RSS start",
            "RSS middle",
            "RSS end",
            "peak RSS",
        ],
        rows=[
            _row(f"{load_runs:,} at once", load),
            _row(f"soak, {soak['waves']} waves of {wave:,}", soak),
        ],
    )
    result = SectionResult(key="load", title="7. Load and soak", tables=[table])
    result.data = {"load": load, "soak": soak, "chunk_chars": CHUNK_CHARS}
    result.notes.append(
        "Each part: a fresh client process (`Agent.run`, `OllamaBackend` with 512 connections "
        f"and a {CONNECT_TIMEOUT:.0f} s connect timeout) and a fresh emulator process. Load: RSS "
        "after the warm-up run (start), when half of the runs had finished (middle), when all "
        "had (end). Soak: RSS after a gc.collect() following the first wave (start), the "
        "middle wave and the last (end)."
    )
    for name, part in (("load", load), ("soak", soak)):
        for error, count in sorted(part["failed"].items(), key=lambda item: -item[1])[:5]:
            result.notes.append(f"{name}: {count} runs failed: {error}")
    start, end = soak["rss"]["start"], soak["rss"]["end"]
    result.goals = [
        Goal(
            name=f"{load_runs:,} concurrent runs: every answer right",
            target="all",
            measured=f"{load['right']} of {load_runs} ({load['wall']:.0f} s, peak RSS "
            f"{mb(load['rss_peak'])})",
            met=load["right"] == load_runs,
        ),
        Goal(
            name=f"soak of {soak_runs:,} runs: every answer right",
            target="all",
            measured=f"{soak['right']} of {soak_runs}",
            met=soak["right"] == soak_runs,
        ),
        Goal(
            name="soak: resident memory flat",
            target=f"end <= start + {SOAK_GROWTH:.0%} + 5 MB",
            measured=f"{mb(start)} -> {mb(soak['rss']['middle'])} -> {mb(end)}",
            met=end <= start * (1 + SOAK_GROWTH) + 5 * 2**20,
        ),
    ]
    return result


if __name__ == "__main__":
    sys.exit(child_main())
