"""Running a batch: many concurrent runs of one agent, each record appended as it finishes.

- Concurrency: one anyio task group; a semaphore lets at most `concurrency` runs exist at once
  (so 10,000 tasks are not 10,000 coroutines waiting). One `Agent` serves them all: it holds no
  per-run state, and its backend's connection pool is shared.
- Crash safety: the output is opened with `O_APPEND` and each record is one `os.write()` of one
  whole line, straight to the kernel (no userspace buffer to lose). A `kill -9` therefore loses
  only the runs in flight, and at worst tears the very last line, which `resume` drops.
- Cancellation (Ctrl-C, or the caller's scope): the runs in flight are cancelled, nothing
  partial is written, and every record written so far stays; the summary says how far it got.
"""

from __future__ import annotations

import datetime
import errno
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio

from agent.errors import DeveloperError, RunError
from agent.loop import Agent, RunResult

from ._checks import Judge, check_answer, run_judge
from ._record import RunRecord, Verdict
from ._tasks import Resumed, Task, resume


@dataclass(kw_only=True)
class BatchSummary:
    """What a batch did. Counts are of this invocation's runs; `skipped` were done before."""

    total: int = 0
    """Tasks in the input (after `--shard`)."""
    skipped: int = 0
    """Tasks already in the output file, not run again."""
    torn: bool = False
    """A torn last line (from a crash) was cut from the output before resuming."""
    retried: int = 0
    """Records of runs that had ended in `error`, taken out of the output to run again."""
    statuses: Counter[str] = field(default_factory=Counter)
    passed: int = 0
    check_failed: int = 0
    unchecked: int = 0
    """Runs with a check that could not be applied (the run did not answer, or the judge broke)."""
    judge_errors: int = 0
    tokens: int = 0
    wall: float = 0.0
    interrupted: bool = False

    @property
    def done(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        """Runs that ended with status `error` (a `RunError`, or an exception of the run)."""
        return self.statuses["error"]

    @property
    def failed(self) -> bool:
        """What makes the command's exit code non-zero: a run ended in `error` or a judge broke.

        A model that stopped at a limit (`step_limit`, `length`...) did not fail the batch:
        that is a result, counted by status."""
        return self.errors > 0 or self.judge_errors > 0

    @property
    def rate(self) -> float:
        """Runs per second over the wall time."""
        return self.done / self.wall if self.wall > 0 else 0.0

    def add(self, record: RunRecord, *, judge_broke: bool = False) -> None:
        self.statuses[record.status] += 1
        self.tokens += record.tokens
        if record.check is not None:
            if record.check.passed is True:
                self.passed += 1
            elif record.check.passed is False:
                self.check_failed += 1
            else:
                self.unchecked += 1
        self.judge_errors += judge_broke

    def to_dict(self) -> dict[str, Any]:
        """The `--json` summary."""
        return {
            "total": self.total,
            "skipped": self.skipped,
            "done": self.done,
            "remaining": max(self.total - self.skipped - self.done, 0),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "checks": {
                "passed": self.passed,
                "failed": self.check_failed,
                "unchecked": self.unchecked,
                "judge_errors": self.judge_errors,
            },
            "tokens": self.tokens,
            "wall_seconds": round(self.wall, 3),
            "runs_per_second": round(self.rate, 3),
            "torn_line_dropped": self.torn,
            "errors_retried": self.retried,
            "interrupted": self.interrupted,
            "failed": self.failed,
        }


class Progress(Protocol):
    """What the runner reports as it goes (the CLI's progress bar is one)."""

    def started(self, summary: BatchSummary) -> None: ...

    def finished_one(self, record: RunRecord, summary: BatchSummary) -> None: ...


class RecordWriter:
    """Appends records to a file, one `os.write()` per line, with `O_APPEND`.

    Appends from several writers (processes included) interleave whole lines, never bytes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise DeveloperError(f"-o {self.path} is a folder: give a file for the runs") from None
        except OSError as exc:
            raise DeveloperError(f"{self.path}: cannot write the output ({exc.strerror})") from None

    def write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:  # a regular file takes it whole; a short write (disk full) is retried
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise DeveloperError(
                    f"{self.path}: cannot write the output ({exc.strerror}); free space and "
                    "run the same command again: it resumes"
                ) from None
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def pending(tasks: Iterable[Task], resumed: Resumed) -> list[Task]:
    """The tasks whose ids are not in the output yet, in input order."""
    return [t for t in tasks if t.key not in resumed.done]


async def run_task(
    agent: Agent, task: Task, *, judge: Judge | None = None
) -> tuple[RunRecord, bool]:
    """Run one task to its record, and whether its judge broke. Never raises for the run's
    own failures (they are the record's `status` and `error`); cancellation propagates."""
    started = datetime.datetime.now(datetime.UTC)
    clock = time.perf_counter()
    try:
        result = await agent.run(task.task)
    except RunError as exc:
        result = exc.result or _failed(agent, exc)
    except Exception as exc:  # one task's bug (a tool, a renderer) must not end 10,000 runs
        result = _failed(agent, exc)
    seconds = time.perf_counter() - clock
    verdict: Verdict | None = None
    broke = False
    if judge is not None:
        verdict, broke = await run_judge(judge, _line(task), result)
    elif task.has_expected:
        verdict = check_answer(result, task.expected)
    record = RunRecord.from_result(
        result,
        agent=agent,
        id=task.id,
        task=task.task,
        metadata=task.metadata,
        check=verdict,
        started=started,
        seconds=seconds,
    )
    return record, broke


def _line(task: Task) -> dict[str, Any]:
    """The input line as the judge gets it."""
    line: dict[str, Any] = {"id": task.id, "task": task.task}
    if task.has_expected:
        line["expected"] = task.expected
    if task.metadata:
        line["metadata"] = dict(task.metadata)
    return line


def _failed(agent: Agent, exc: Exception) -> RunResult:
    return RunResult(
        answer="",
        messages=(),
        status="error",
        error=f"{type(exc).__name__}: {exc}",
        exception=exc,
        model=agent.model,
    )


async def drive(
    agent: Agent,
    todo: Iterable[Task],
    sink: Callable[[RunRecord, bytes], None],
    *,
    concurrency: int,
    judge: Judge | None = None,
    summary: BatchSummary,
    progress: Progress | None = None,
) -> None:
    """Run `todo` with at most `concurrency` runs at once; each record goes to `sink` (with its
    line) the moment its run ends, then into `summary` and `progress`.

    The core of `run_batch`, and of each Ray shard (whose sink sends lines to the driver).
    """
    if concurrency < 1:
        raise DeveloperError(f"concurrency must be at least 1, got {concurrency}")
    slots = anyio.Semaphore(concurrency)

    async def one(task: Task) -> None:
        try:
            record, broke = await run_task(agent, task, judge=judge)
            sink(record, record.to_json())
            summary.add(record, judge_broke=broke)
        finally:
            slots.release()
        if progress is not None:
            progress.finished_one(record, summary)

    async with anyio.create_task_group() as group:
        for task in todo:
            await slots.acquire()  # at most `concurrency` runs exist, not one per task
            group.start_soon(one, task, name=f"batch task {task.id!r}")


async def run_batch(
    agent: Agent,
    tasks: Iterable[Task],
    output: str | os.PathLike[str],
    *,
    concurrency: int = 64,
    judge: Judge | None = None,
    progress: Progress | None = None,
    summary: BatchSummary | None = None,
    retry_errors: bool = True,
    resumed: Resumed | None = None,
) -> BatchSummary:
    """Run every task not yet in `output` with `agent`, appending one record per run.

    `summary` (made if not given) is filled in as runs finish, so a caller that is interrupted
    still has the counts. `retry_errors`: see `resume`. `resumed`: what the caller's own
    `resume(output)` found (it checked the file before connecting to anything).
    """
    if concurrency < 1:
        raise DeveloperError(f"concurrency must be at least 1, got {concurrency}")
    summary = summary if summary is not None else BatchSummary()
    clock = time.perf_counter()
    all_tasks = list(tasks)
    if resumed is None:
        resumed = resume(output, retry_errors=retry_errors)
    todo = pending(all_tasks, resumed)
    summary.total = len(all_tasks)
    summary.skipped = len(all_tasks) - len(todo)
    summary.torn = resumed.torn
    summary.retried = resumed.retried
    if progress is not None:
        progress.started(summary)
    with RecordWriter(output) as writer:
        try:
            await drive(
                agent,
                todo,
                lambda _record, line: writer.write(line),
                concurrency=concurrency,
                judge=judge,
                summary=summary,
                progress=progress,
            )
        except BaseException:
            summary.interrupted = True
            raise
        finally:
            summary.wall = time.perf_counter() - clock
    return summary
