"""`llama-agent batch` at scale: tasks per second, CPU and memory, and the cost of resuming.

    python -m bench.batch [--tasks 10000] [--concurrency 256 1024] [--latency 0.2]

Each case runs in a fresh child process against one emulator process (`python -m agent.testing
serve --echo`, 200 ms before each answer): one request per task, the echo model answering the
task. Two clients per concurrency, measured in the same run:

- `batch`: `run_batch` (what the command runs): a record per run (messages, usage, render
  settings), its check (`expected`), one `os.write()` per line to the output file;
- `baseline`: the same number of bare `Agent.run` calls in a task group with the same limit,
  results dropped: the floor the batch machinery adds to.

`ideal` is the time the latency alone forces: tasks / concurrency x latency.

Then resuming: with 5,000 of 10,000 records already in the output (records of the batch just
run), the time `resume` takes to read them and `pending` to pick the 5,000 tasks left, and the
time to read and check the 10,000-line tasks file.

Numbers go to stdout as a Markdown table; paste them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bench._common import ROOT, child_env, emulator_process, mb, rss_bytes

MODEL = "llama3.1"


def _tasks_file(path: Path, count: int) -> None:
    path.write_bytes(
        b"".join(
            orjson.dumps({"id": i, "task": f"task number {i}", "expected": "number"}) + b"\n"
            for i in range(count)
        )
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the child ----------------------------------------------------------------------------------


async def _child(client: str, url: str, tasks_path: Path, output: Path, concurrency: int) -> None:
    from agent import Agent
    from agent.batch import read_tasks, run_batch

    tasks = read_tasks(tasks_path)
    async with Agent(MODEL, host=url) as agent:
        # Warm: the server's model info and the tokenizer are loaded once per process, not per
        # task; neither belongs to what is measured.
        await agent.run("warm up")
        rss_before = rss_bytes()[0]
        cpu = _cpu()
        clock = time.perf_counter()
        if client == "batch":
            summary = await run_batch(agent, tasks, output, concurrency=concurrency)
            assert summary.statuses == {"answered": len(tasks)}, summary.to_dict()
            assert summary.passed == len(tasks)
        else:
            slots = anyio.Semaphore(concurrency)
            answered = 0

            async def one(text: str) -> None:
                nonlocal answered
                try:
                    result = await agent.run(text)
                    answered += result.status == "answered"
                finally:
                    slots.release()

            async with anyio.create_task_group() as group:
                for task in tasks:
                    await slots.acquire()
                    group.start_soon(one, task.task)
            assert answered == len(tasks)
        wall = time.perf_counter() - clock
    outcome = {
        "wall": wall,
        "cpu": _cpu() - cpu,
        "rss_before": rss_before,
        "rss_peak": rss_bytes()[1],
    }
    print(json.dumps(outcome), flush=True)


# --- the parent ---------------------------------------------------------------------------------


def _case(
    client: str, url: str, tasks: Path, output: Path, concurrency: int, server: Any
) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.batch", "--child", client, "--url", url]
    command += ["--tasks-file", str(tasks), "--output", str(output)]
    command += ["--concurrency", str(concurrency)]
    server_cpu = server.cpu_seconds()
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=3600
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client} at {concurrency} failed:\n{done.stderr[-3000:]}")
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    outcome.update(
        client=client, concurrency=concurrency, emulator_cpu=server.cpu_seconds() - server_cpu
    )
    return outcome


def _resume_times(tasks_path: Path, full_output: Path, folder: Path, rounds: int) -> dict[str, Any]:
    from agent.batch import pending, read_tasks, resume

    lines = full_output.read_bytes().splitlines(keepends=True)
    half = folder / "half.jsonl"
    half.write_bytes(b"".join(lines[: len(lines) // 2]))
    read, skip = [], []
    for _ in range(rounds):
        clock = time.perf_counter()
        tasks = read_tasks(tasks_path)
        read.append(time.perf_counter() - clock)
        clock = time.perf_counter()
        todo = pending(tasks, resume(half))
        skip.append(time.perf_counter() - clock)
        assert len(todo) == len(tasks) - len(lines) // 2
    return {
        "done": len(lines) // 2,
        "tasks": len(tasks),
        "bytes": half.stat().st_size,
        "resume": statistics.median(skip),
        "read": statistics.median(read),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=5, help="of the resume timing")
    parser.add_argument("--child", choices=["batch", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tasks-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        anyio.run(_child, args.child, args.url, args.tasks_file, args.output, args.concurrency[0])
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        tasks = folder / "tasks.jsonl"
        _tasks_file(tasks, args.tasks)
        emulator = ["--echo", "--latency", str(args.latency), "--max-records", "100"]
        last_output = folder / "runs.jsonl"
        with emulator_process(*emulator) as server:
            for concurrency in args.concurrency:
                for client in ("baseline", "batch"):
                    output = folder / f"runs-{concurrency}.jsonl"
                    rows.append(_case(client, server.url, tasks, output, concurrency, server))
                    if client == "batch":
                        last_output = output
        resumed = _resume_times(tasks, last_output, folder, args.rounds)
    print(f"{args.tasks:,} tasks, one request each, {args.latency * 1000:.0f} ms per request\n")
    print(
        "| concurrency | client | wall | tasks/s | / baseline | / ideal | client CPU "
        "| CPU / task | peak RSS | emulator CPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    baseline: dict[int, float] = {}
    for row in rows:
        ideal = args.tasks / row["concurrency"] * args.latency
        if row["client"] == "baseline":
            baseline[row["concurrency"]] = row["wall"]
        print(
            f"| {row['concurrency']} | {row['client']} | {row['wall']:.2f} s "
            f"| {args.tasks / row['wall']:.0f} | {row['wall'] / baseline[row['concurrency']]:.2f}x "
            f"| {row['wall'] / ideal:.2f}x | {row['cpu']:.1f} s "
            f"| {row['cpu'] / args.tasks * 1e6:.0f} µs | {mb(row['rss_peak'])} "
            f"| {row['emulator_cpu']:.1f} s |"
        )
    print(
        f"\nresume: {resumed['done']:,} records done ({mb(resumed['bytes'])}) skipped in "
        f"{resumed['resume'] * 1000:.0f} ms (median of {args.rounds}); reading and checking "
        f"the {resumed['tasks']:,}-line tasks file: {resumed['read'] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
