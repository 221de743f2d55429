"""`llama-agent export`: a batch's run records as a fine-tuning dataset and its card.

The work is `agent.batch.export_runs` and `write_card`; this module reads the arguments' files,
prints the summary (stderr, or one JSON object on stdout with `--json`) and picks the exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from agent.batch import ExportFormat, ExportReport, export_runs, write_card
from agent.cli._app import ExitCode, exit_code_for_error, failure_json
from agent.errors import LlamaAgentError

__all__ = ["export"]

# Warnings printed one by one before the rest are only counted (the card has the totals).
_SHOWN_WARNINGS = 10


def export(
    runs: Path,
    output: Path,
    *,
    format: ExportFormat,
    only_passed: bool,
    max_steps: int | None,
    dedupe: bool,
    tokenize: bool,
    card: Path | None,
    as_json: bool,
) -> int:
    """Export `runs` to `output`, write the card, report; the exit code."""
    if not runs.is_file():
        message = f"{runs}: no such file; pass the runs.jsonl a batch wrote"
        return _fail(ExitCode.USAGE, message, as_json=as_json)
    if output.resolve() == runs.resolve():
        message = "-o names the input file; write the export to another file"
        return _fail(ExitCode.USAGE, message, as_json=as_json)
    try:
        report = export_runs(
            runs,
            output,
            format=format,
            only_passed=only_passed,
            max_steps=max_steps,
            dedupe=dedupe,
            tokenize=tokenize,
        )
        card_path = write_card(report, card)
    except (LlamaAgentError, OSError) as exc:
        return _fail(
            exit_code_for_error(exc), str(exc), as_json=as_json, exception=type(exc).__name__
        )
    if as_json:
        sys.stdout.write(json.dumps(_summary(report, card_path), ensure_ascii=False) + "\n")
    else:
        _print(report, card_path)
    return ExitCode.OK


def _summary(report: ExportReport, card: Path) -> dict[str, Any]:
    return {
        "status": "ok",
        "output": str(report.output),
        "card": str(card),
        "format": report.format,
        "input_runs": report.input_runs,
        "exported": report.exported,
        "skipped": dict(sorted(report.skipped.items())),
        "models": dict(sorted(report.models.items())),
        "tokens": report.tokens,
        "completion_tokens": report.completion_tokens,
        "tokens_exact": report.tokens_exact,
        "warnings": report.warnings,
    }


def _print(report: ExportReport, card: Path) -> None:
    err = sys.stderr
    for warning in report.warnings[:_SHOWN_WARNINGS]:
        err.write(f"warning: {warning}\n")
    if len(report.warnings) > _SHOWN_WARNINGS:
        err.write(
            f"warning: and {len(report.warnings) - _SHOWN_WARNINGS} more (--json lists all)\n"
        )
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(report.skipped.items()))
    err.write(
        f"exported {report.exported} of {report.input_runs} runs to {report.output} "
        f"({report.format})" + (f"; skipped: {skipped}" if skipped else "") + "\n"
    )
    err.write(f"dataset card: {card}\n")


def _fail(code: int, message: str, *, as_json: bool, exception: str | None = None) -> int:
    if as_json:
        sys.stdout.write(failure_json(code, message, exception))
    else:
        sys.stderr.write(f"error: {message}\n")
    return code
