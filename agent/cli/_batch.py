"""`llama-agent batch`: the agent over a tasks file, with a progress bar and a summary.

The work is `agent.batch`'s; this module reads the command line's choices, shows progress (a
`rich` bar on stderr when it is a terminal), prints the summary (or one JSON object with
`--json`) and picks the exit code: 0 when every run ended without `error` and every judge
worked, 1 otherwise (limits such as `step_limit` are results, not failures), 130 on Ctrl-C,
and the usual codes for a bad config (3), an unreachable server (4) or a missing model (5).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from agent.batch import (
    BatchSummary,
    RunRecord,
    Shard,
    Task,
    load_judge,
    read_tasks,
    resume,
    run_batch,
    run_batch_on_ray,
)
from agent.cli._app import ExitCode
from agent.cli._output import Printer
from agent.cli._session import Overrides, _agent, _guarded, config_path, ensure_model
from agent.config import load_config

if TYPE_CHECKING:
    from agent.batch import Judge

__all__ = ["BatchOptions", "batch"]


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """The command line of `llama-agent batch`, parsed."""

    config: Path | None
    tasks: Path
    output: Path
    concurrency: int = 64
    shard: str | None = None
    ray: str | None = None
    judge: str | None = None
    as_json: bool = False
    overrides: Overrides = field(default_factory=Overrides)
    pull: bool = False
    retry_errors: bool = True


class _Bar:
    """The progress bar: done of total, failed, rate, ETA (stderr, terminals only)."""

    def __init__(self, printer: Printer) -> None:
        self._progress = Progress(
            TextColumn("[bold]batch[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[rate]:.1f} runs/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=printer.err,
            transient=True,
        )
        self._task = self._progress.add_task("batch", total=None, failed=0, rate=0.0)
        self._clock = 0.0

    def started(self, summary: BatchSummary) -> None:
        self._clock = time.monotonic()
        self._progress.update(self._task, total=summary.total - summary.skipped, completed=0)
        self._progress.start()

    def finished_one(self, record: RunRecord, summary: BatchSummary) -> None:
        elapsed = time.monotonic() - self._clock
        self._progress.update(
            self._task,
            completed=summary.done,
            failed=summary.errors,
            rate=summary.done / elapsed if elapsed > 0 else 0.0,
        )

    def stop(self) -> None:
        self._progress.stop()


def _summary_lines(summary: BatchSummary, output: Path) -> list[str]:
    data = summary.to_dict()
    lines = []
    if summary.interrupted:
        lines.append(
            f"interrupted: {summary.done} runs written to {output}; run the same command "
            "again to do the rest"
        )
    resumed = f", {summary.skipped} already done" if summary.skipped else ""
    if summary.retried:
        resumed += f", {summary.retried} that had ended in error run again"
    lines.append(f"{summary.done} runs in {summary.wall:.1f} s ({summary.rate:.1f}/s){resumed}")
    if summary.torn:
        lines.append("a torn last line (an earlier crash) was dropped; its task ran again")
    statuses = ", ".join(f"{name} {count}" for name, count in data["statuses"].items())
    lines.append(f"status: {statuses or 'none'}")
    checks = data["checks"]
    if any(checks.values()):
        lines.append(
            f"checks: {checks['passed']} passed, {checks['failed']} failed, "
            f"{checks['unchecked']} not checked"
            + (f" ({checks['judge_errors']} judge errors)" if checks["judge_errors"] else "")
        )
    lines.append(f"tokens: {summary.tokens:,}")
    if summary.errors:
        lines.append(
            f"{summary.errors} runs ended in error: their records say why; run the same "
            "command again to retry them"
        )
    if summary.judge_errors:
        lines.append(f"the judge broke {summary.judge_errors} times: see the records' check.reason")
    return lines


def _report(printer: Printer, summary: BatchSummary, options: BatchOptions) -> None:
    if options.as_json:
        data: dict[str, Any] = {"output": str(options.output), **summary.to_dict()}
        printer.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    for line in _summary_lines(summary, options.output):
        printer.write(line + "\n")


def _tasks(options: BatchOptions) -> list[Task]:
    tasks = read_tasks(options.tasks)
    if options.shard is not None:
        tasks = Shard.parse(options.shard).select(tasks)
    return tasks


def batch(options: BatchOptions) -> int:
    """`llama-agent batch`."""
    printer = Printer()
    summary = BatchSummary()

    def body() -> int:
        tasks = _tasks(options)
        bar = _Bar(printer) if printer.fancy else None
        try:
            if options.ray is not None:
                _on_ray(options, tasks, bar, summary)
            else:
                _local(options, tasks, printer, bar, summary)
        except KeyboardInterrupt:
            if bar is not None:
                bar.stop()
            summary.interrupted = True
            _report(printer, summary, options)
            return ExitCode.INTERRUPTED
        finally:
            if bar is not None:
                bar.stop()
        _report(printer, summary, options)
        return ExitCode.ERROR if summary.failed else ExitCode.OK

    return _guarded(printer, body, as_json=options.as_json)


def _local(
    options: BatchOptions,
    tasks: list[Task],
    printer: Printer,
    bar: _Bar | None,
    summary: BatchSummary,
) -> None:
    judge: Judge | None = load_judge(options.judge) if options.judge else None
    agent, _ = _agent(options.config, overrides=options.overrides)
    # A file that is not a batch output is refused here, before anything connects.
    resumed = resume(options.output, retry_errors=options.retry_errors)

    async def go() -> None:
        async with agent:
            # One clear failure (no server, no model) before any run, not one per task.
            await ensure_model(agent, printer, pull=options.pull)
            await agent.backend.model_info(agent.model)
            await run_batch(
                agent,
                tasks,
                options.output,
                concurrency=options.concurrency,
                judge=judge,
                progress=bar,
                summary=summary,
                resumed=resumed,
            )

    anyio.run(go)


def _on_ray(
    options: BatchOptions, tasks: list[Task], bar: _Bar | None, summary: BatchSummary
) -> None:
    config = options.overrides.apply(load_config(config_path(options.config)))

    async def go() -> None:
        await run_batch_on_ray(
            config,
            tasks,
            options.output,
            address=options.ray or None,
            concurrency=options.concurrency,
            judge=options.judge,
            progress=bar,
            summary=summary,
            retry_errors=options.retry_errors,
        )

    anyio.run(go)
