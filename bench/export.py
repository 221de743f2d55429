"""`llama-agent export` at scale: runs per second for each format, against reading the file.

    python -m bench.export [--runs 10000]

Four real runs are made first (an Agent against the emulator, in this process): an answer in
one step, a custom tool call, a built-in call (eom), and a tool error sent back then a retry.
The runs file repeats them with distinct ids and tasks (the task text is changed in the messages
too, so each run renders differently and a cache of whole prompts would not help). Measured in
the same run:

- `read`: every line parsed into a `RunRecord` and nothing else: the floor an export adds to;
- `native`, `messages`, `native --tokenize`, `native --dedupe` (half the tasks repeat): the
  export as the command runs it, each run replayed and checked.

Numbers go to stdout as a Markdown table; paste them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from agent import Agent, tool
from agent.batch import RunRecord, Verdict, export_runs
from agent.llama3 import tokenizer_is_exact
from agent.testing import OllamaEmulator, Script, ScriptRequest, call_tool, sequence, tool_call_text

TODAY = datetime.date(2024, 9, 21)
STARTED = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


@tool(builtin="brave_search")
def web_search(query: str) -> str:
    """Search the web.

    Args:
        query: What to look for.
    """
    return f"Three results for {query}."


def _builtin(request: ScriptRequest) -> str:
    if request.tool_results:
        return f"Found it: {request.tool_results[-1]}<|eot_id|>"
    return '<|python_tag|>brave_search.call(query="llama 3.1")<|eom_id|>'


def _retry(request: ScriptRequest) -> str:
    done = len(request.tool_results)
    if done < 2:
        return tool_call_text("divide", {"a": 1, "b": 4 * done})
    return "It is 0.25.<|eot_id|>"


KINDS: list[tuple[str, Callable[[], Script], list[Any]]] = [
    ("What is the capital of France?", lambda: sequence("Paris."), []),
    ("What is 1 + 2?", lambda: call_tool("add", {"a": 1, "b": 2}, then="3"), [add]),
    ("When did Llama 3.1 come out?", lambda: _builtin, [web_search]),
    ("What is 1 / 4?", lambda: _retry, [divide]),
]


async def _records() -> list[RunRecord]:
    made = []
    for task, script, tools in KINDS:
        async with (
            OllamaEmulator(script()) as emu,
            Agent("llama3.1", host=emu.url, tools=tools, system="Be brief.", today=TODAY) as agent,
        ):
            result = await agent.run(task)
            made.append(
                RunRecord.from_result(
                    result,
                    agent=agent,
                    id=0,
                    task=task,
                    metadata={},
                    check=Verdict(passed=True),
                    started=STARTED,
                    seconds=0.1,
                )
            )
    return made


def _runs_file(path: Path, records: list[RunRecord], count: int) -> None:
    with path.open("wb") as out:
        for i in range(count):
            record = records[i % len(records)]
            # Half the tasks repeat (for --dedupe); the text differs in the messages too.
            task = f"{record.task} (case {i % max(count // 2, 1)})"
            messages = [
                {**m, "content": task} if m["role"] == "user" else m for m in record.messages
            ]
            out.write(replace(record, id=i, task=task, messages=tuple(messages)).to_json())


def _read(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if RunRecord.from_json(line))


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args(argv)
    records = anyio.run(_records)
    tokenizer_is_exact()  # load the tokenizer before the clock starts
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        runs, out = folder / "runs.jsonl", folder / "train.jsonl"
        _runs_file(runs, records, args.runs)
        size = runs.stat().st_size
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("read", lambda: _read(runs)),
            ("native", lambda: export_runs(runs, out)),
            ("messages", lambda: export_runs(runs, out, format="messages")),
        ]
        if tokenizer_is_exact():
            cases.append(("native --tokenize", lambda: export_runs(runs, out, tokenize=True)))
        cases.append(("native --dedupe", lambda: export_runs(runs, out, dedupe=True)))
        rows = []
        for label, run in cases:
            seconds, value = _timed(run)
            exported = value if isinstance(value, int) else value.exported
            rows.append((label, seconds, exported, out.stat().st_size if label != "read" else 0))
    print(f"{args.runs:,} runs ({size / 1e6:.1f} MB), 4 kinds of run, 1 to 3 steps each\n")
    print("| case | seconds | runs/s | / read | exported | output MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    floor = rows[0][1]
    for label, seconds, exported, written in rows:
        print(
            f"| {label} | {seconds:.2f} | {args.runs / seconds:,.0f} | {seconds / floor:.1f}x "
            f"| {exported:,} | {written / 1e6:.1f} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB; " + json.dumps({"runs": args.runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
