"""Run the benchmarks of issue 8 against `OllamaEmulator`; print a table; write the results.

    python -m bench                      # everything, full sizes (a few minutes)
    python -m bench --quick              # small sizes, written to bench/quick/ (not committed)
    python -m bench --only concurrency   # one section (or several, comma-separated)
    python -m bench --runs 200,1000      # the concurrency sizes
    python -m bench --output /tmp/out    # where RESULTS.md and results.json go (default bench/,
                                         # bench/quick/ with --quick)
    python -m bench --only load          # 10,000 concurrent runs and a 20,000-run soak (long:
                                         # on request only, never part of "everything")

Sections: 1 `overhead` (per step, against a hand-written loop), 2 `concurrency` (hundreds of
runs in one process), 3 `cache` (prompt-cache reuse against Ollama's chat template),
4 `streaming` (chunk to TextDelta), 5 `tools` (sandbox, math, validation), 6 `serve`
(`llama-agent serve` against `Agent.run` at 100 and 1,000 concurrent clients), 7 `load`
(10,000 concurrent runs in one process, a soak of 20,000 runs in waves; resident memory at the
start, middle and end; only with `--only`).

With `--only`, the sections run are merged into an existing `results.json` of the same kind
(full or quick), so RESULTS.md keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import _cache, _concurrency, _load, _overhead, _serve, _streaming, _tools
from bench._common import Goal, SectionResult, Table
from bench._machine import describe, summary
from bench._report import print_section, write

SECTIONS: dict[str, Callable[..., SectionResult]] = {
    "overhead": _overhead.run,
    "concurrency": _concurrency.run,
    "cache": _cache.run,
    "streaming": _streaming.run,
    "tools": _tools.run,
    "serve": _serve.run,
    "load": _load.run,
}
ON_REQUEST = frozenset({"load"})  # too long for "everything": run with --only
DEFAULT_OUTPUT = Path(__file__).resolve().parent
QUICK_OUTPUT = DEFAULT_OUTPUT / "quick"  # gitignored: a quick run checks the runner only


def _selected(only: str | None) -> list[str]:
    if not only:
        return [name for name in SECTIONS if name not in ON_REQUEST]
    names = list(SECTIONS)
    chosen = []
    for word in only.replace(" ", "").split(","):
        name = names[int(word) - 1] if word.isdigit() and 0 < int(word) <= len(names) else word
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {word!r}; choose from {', '.join(names)} or 1-7")
        chosen.append(name)
    return [n for n in names if n in chosen]


def _stamp() -> str:
    """Now (UTC, to the minute) and the load average: what a section's numbers stand in."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{now}, load average {load}"


def _run_one(
    name: str, *, quick: bool, sizes: list[int] | None, rounds: int | None = None
) -> tuple[SectionResult, bool]:
    stamp = _stamp()
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"quick": quick}
    if name == "concurrency" and sizes:
        kwargs["sizes"] = sizes
    if name == "concurrency" and rounds:
        kwargs["rounds"] = rounds
    try:
        section = SECTIONS[name](**kwargs)
        ok = True
    except Exception:
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        section = SectionResult(key=name, title=name, notes=["this section failed"])
        section.profile = trace
        section.goals = [
            Goal(name="the section ran", target="no error", measured="failed", met=False)
        ]
        ok = False
    section.seconds = time.perf_counter() - started
    section.measured = stamp
    return section, ok


def _from_json(key: str, data: dict[str, Any]) -> SectionResult:
    return SectionResult(
        key=key,
        title=data["title"],
        tables=[Table(**t) for t in data["tables"]],
        goals=[Goal(**g) for g in data["goals"]],
        notes=list(data["notes"]),
        data=dict(data["data"]),
        profile=data.get("profile"),
        seconds=float(data.get("seconds", 0.0)),
        measured=str(data.get("measured", "")),
    )


def _merge(directory: Path, fresh: list[SectionResult], *, quick: bool) -> list[SectionResult]:
    """Earlier results of the same kind for the sections not run now, in section order."""
    path = directory / "results.json"
    if not path.exists():
        return fresh
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return fresh
    if earlier.get("quick") != quick:
        return fresh
    by_key = {key: _from_json(key, value) for key, value in earlier.get("sections", {}).items()}
    by_key.update({s.key: s for s in fresh})
    return [by_key[k] for k in SECTIONS if k in by_key]


def output_directory(given: Path | None, *, quick: bool) -> Path:
    """Where the results go: `given`, else bench/ (bench/quick/ for a quick run)."""
    if given is not None:
        return given
    return QUICK_OUTPUT if quick else DEFAULT_OUTPUT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the runner")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)} (or 1-7)")
    parser.add_argument("--runs", help="concurrency sizes, comma-separated (default 200,1000)")
    parser.add_argument(
        "--rounds", type=int, help="concurrency: rounds of the largest size (default 2)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results directory (default bench/; bench/quick/ with --quick, so a quick run "
        "never overwrites the committed results)",
    )
    args = parser.parse_args(argv)
    args.output = output_directory(args.output, quick=args.quick)
    names = _selected(args.only)
    sizes = [int(x) for x in args.runs.split(",")] if args.runs else None

    machine = describe()
    print(f"llama-agent benchmarks{' (quick)' if args.quick else ''}: {summary(machine)}")
    started = time.perf_counter()
    sections: list[SectionResult] = []
    failed = False
    for name in names:
        section, ok = _run_one(name, quick=args.quick, sizes=sizes, rounds=args.rounds)
        failed |= not ok
        sections.append(section)
        print_section(section)
    seconds = time.perf_counter() - started
    if args.only:
        sections = _merge(args.output, sections, quick=args.quick)
    results, data = write(args.output, sections, machine, quick=args.quick, seconds=seconds)

    print(f"\n== goals ({seconds:.0f} s in all)")
    for section in sections:
        for goal in section.goals:
            mark = "met   " if goal.met else "MISSED"
            print(f"[{mark}] {section.title}: {goal.name}: {goal.measured} (goal {goal.target})")
    print(f"\nwrote {results} and {data}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
