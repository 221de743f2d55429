"""The results as a terminal table, as `RESULTS.md` and as `results.json`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import SectionResult, Table
from bench._machine import summary

COMMAND = "python -m bench"


def text_table(table: Table) -> str:
    """Columns padded to their widest cell."""
    cells = [list(table.headers), *[list(row) for row in table.rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.headers))]
    lines = [table.title]
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_section(section: SectionResult) -> None:
    print(f"\n== {section.title} ({section.seconds:.0f} s)", flush=True)
    for table in section.tables:
        print(text_table(table) + "\n")
    for goal in section.goals:
        mark = "met" if goal.met else "MISSED"
        print(f"goal: {goal.name}: {goal.target}; measured {goal.measured} [{mark}]")
    for note in section.notes:
        print(f"note: {note}")


def _markdown_table(table: Table) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [f"**{table.title}**", "", row(table.headers), row(["---"] * len(table.headers))]
    lines += [row(r) for r in table.rows]
    return "\n".join(lines)


def markdown(
    sections: Sequence[SectionResult], machine: dict[str, Any], *, quick: bool, seconds: float
) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    out = [
        "# Benchmark results",
        "",
        f"Written by `{COMMAND}{' --quick' if quick else ''}` on {machine['date']} in "
        f"{seconds:.0f} s, against `agent.testing.OllamaEmulator` (see `bench/run.py`). "
        "Every ratio compares numbers measured in the same run.",
        "",
        f"- Machine: {summary(machine)}",
        f"- {machine['platform']}; bubblewrap: {machine['bubblewrap'] or 'missing'}; "
        f"exact tokenizer: {machine['exact_tokenizer']}",
        f"- Packages: {packages}",
    ]
    if quick:
        out += ["", "**Quick run: small sizes, for checking the runner; not the real numbers.**"]
    goals = [(s, g) for s in sections for g in s.goals]
    if goals:
        out += ["", "## Goals", "", "| section | goal | target | measured | |"]
        out += ["|---|---|---|---|---|"]
        for section, goal in goals:
            mark = "met" if goal.met else "**missed**"
            out.append(
                f"| {section.title} | {goal.name} | {goal.target} | {goal.measured} | {mark} |"
            )
    for section in sections:
        out += ["", f"## {section.title}", ""]
        if section.measured:
            out += [f"*Measured {section.measured}, in {section.seconds:.0f} s.*", ""]
        for table in section.tables:
            out += [_markdown_table(table), ""]
        out += [f"- {note}" for note in section.notes]
        missed = [g for g in section.goals if not g.met]
        if missed:
            names = "; ".join(g.name for g in missed)
            out += ["", f"Missed: {names}."]
            if section.profile:
                out += ["", "Where the time goes:", "", "```", section.profile.strip(), "```"]
    return "\n".join(out).rstrip() + "\n"


def to_json(
    sections: Sequence[SectionResult], machine: dict[str, Any], *, quick: bool, seconds: float
) -> dict[str, Any]:
    return {
        "command": COMMAND + (" --quick" if quick else ""),
        "quick": quick,
        "seconds": seconds,
        "machine": machine,
        "sections": {
            s.key: {
                "title": s.title,
                "seconds": s.seconds,
                "measured": s.measured,
                "goals": [dataclasses.asdict(g) for g in s.goals],
                "notes": s.notes,
                "tables": [dataclasses.asdict(t) for t in s.tables],
                "data": s.data,
                "profile": s.profile,
            }
            for s in sections
        },
    }


def write(
    directory: Path,
    sections: Sequence[SectionResult],
    machine: dict[str, Any],
    *,
    quick: bool,
    seconds: float,
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    results = directory / "RESULTS.md"
    data = directory / "results.json"
    results.write_text(markdown(sections, machine, quick=quick, seconds=seconds))
    payload = to_json(sections, machine, quick=quick, seconds=seconds)
    data.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return results, data
