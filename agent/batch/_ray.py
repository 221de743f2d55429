"""`--ray`: a batch's shards as Ray tasks, their records gathered into the one output file.

The driver (this process) resumes the output as a local batch does, splits what is left into
one shard per CPU of the cluster (by the same id hash as `--shard`), and starts each shard as a
Ray generator task. A shard is one worker process: it builds the agent from the config, runs its
tasks with `drive` (the local runner: many concurrent runs in one event loop), and yields its
records in small batches as they finish. The driver appends each line to the output the moment
it arrives, with the same one-`write()`-per-line rule, so the resume rule is unchanged: killing
the driver loses only the runs in flight on the cluster.

The config travels as the validated `AgentConfig` (pickled), the judge as its function: a judge
in a file of the current folder (`--judge checks:grade` beside the tasks) is pickled by value,
so the workers need not find the file. Custom tools and any file a tool reads must be
importable or present on the workers: a local instance shares this machine's files (and, when
the driver starts it, gets the current folder on its `PYTHONPATH`); on a cluster, ship them
with a runtime environment (`ray job submit --working-dir .`).
"""

from __future__ import annotations

import math
import os
import queue
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.from_thread import start_blocking_portal

from agent.errors import DeveloperError, LlamaAgentError, RunError

from ._checks import Judge, judge_broke, load_judge
from ._record import RunRecord
from ._runner import BatchSummary, Progress, RecordWriter, drive, pending
from ._tasks import Task, resume, shard_of

if TYPE_CHECKING:
    from agent.config import AgentConfig

# A shard sends what finished within this long (or this many lines) as one Ray object: one
# object per record would cost the object store more than the records themselves.
_FLUSH_SECONDS = 0.2
_FLUSH_LINES = 256
_DONE = object()


def ray_available() -> bool:
    """Whether the `ray` extra is installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DeveloperError("--ray needs the ray extra: pip install 'llama-agent[ray]'") from None
    return ray


# --- the worker side --------------------------------------------------------------------------


async def _run_shard(
    config: AgentConfig,
    tasks: Sequence[Task],
    *,
    concurrency: int,
    judge: Judge | None,
    host: str | None,
    put: Any,
) -> BatchSummary:
    from agent.config import build_agent  # the worker builds its own agent, with its own pool

    agent = build_agent(config, **({"host": host} if host is not None else {}))
    summary = BatchSummary(total=len(tasks))
    async with agent:
        await drive(
            agent,
            tasks,
            lambda _record, line: put(line),
            concurrency=concurrency,
            judge=judge,
            summary=summary,
        )
    return summary


def shard_lines(
    config: AgentConfig,
    tasks: Sequence[Task],
    *,
    concurrency: int,
    judge: Judge | None,
    host: str | None,
) -> Iterator[list[bytes]]:
    """Run a shard and yield its record lines in batches, as they finish (a Ray generator task's
    body; also callable directly). The event loop runs in a thread of its own (anyio's blocking
    portal), so this generator can yield while runs go on."""
    lines: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with start_blocking_portal() as portal:
        future = portal.start_task_soon(
            lambda: _run_shard(
                config,
                tasks,
                concurrency=concurrency,
                judge=judge,
                host=host,
                put=lines.put,
            )
        )
        future.add_done_callback(lambda _future: lines.put(_DONE))
        finished = False
        while not finished:
            batch: list[bytes] = []
            item = lines.get()
            deadline = time.monotonic() + _FLUSH_SECONDS
            while True:
                if item is _DONE:
                    finished = True
                    break
                batch.append(item)
                if len(batch) >= _FLUSH_LINES:
                    break
                try:
                    item = lines.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
            if batch:
                yield batch
        future.result()  # the shard's own failure (a bad config on the worker) is the task's


# --- the driver side --------------------------------------------------------------------------


def split(tasks: Sequence[Task], count: int) -> list[list[Task]]:
    """`tasks` in `count` parts by id hash (non-empty parts only)."""
    parts: list[list[Task]] = [[] for _ in range(count)]
    for task in tasks:
        parts[shard_of(task.id, count)].append(task)
    return [part for part in parts if part]


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to Ray unless the program already did; True when this call started it."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False}
    if address:
        options["address"] = address
    elif not os.environ.get("RAY_ADDRESS"):
        # A local instance shares this machine's files: let its workers import what we can.
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    try:
        ray.init(**options)
    except ConnectionError as exc:
        raise DeveloperError(f"--ray {address}: cannot connect to Ray ({exc})") from None
    return True


async def run_batch_on_ray(
    config: AgentConfig,
    tasks: Sequence[Task],
    output: str | os.PathLike[str],
    *,
    address: str | None = None,
    concurrency: int = 64,
    shards: int | None = None,
    judge: str | None = None,
    host: str | None = None,
    progress: Progress | None = None,
    summary: BatchSummary | None = None,
    retry_errors: bool = True,
) -> BatchSummary:
    """Run the tasks not yet in `output` as Ray tasks, appending their records as they arrive.

    `address`: a Ray cluster (`ray://host:10001`, `auto`); None or "" connects to `RAY_ADDRESS`
    or starts a local instance (stopped again at the end). A program that already called
    `ray.init()` keeps its connection. `shards`: Ray tasks to run (default: the cluster's
    CPUs); `concurrency`: runs at once over all of them. `judge`: a `module:function` path,
    loaded here to fail early and again on each worker.
    """
    ray = _require_ray()
    if concurrency < 1:
        raise DeveloperError(f"concurrency must be at least 1, got {concurrency}")
    # A bad path is one message here, not one failed task per shard.
    judge_function = _shippable(ray, load_judge(judge)) if judge else None
    summary = summary if summary is not None else BatchSummary()
    clock = time.perf_counter()
    resumed = resume(output, retry_errors=retry_errors)
    todo = pending(tasks, resumed)
    summary.total = len(tasks)
    summary.skipped = len(tasks) - len(todo)
    summary.torn = resumed.torn
    summary.retried = resumed.retried
    if progress is not None:
        progress.started(summary)
    started_ray = _connect(ray, address)
    try:
        count = shards or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        parts = split(todo, count)
        per_shard = max(math.ceil(concurrency / max(len(parts), 1)), 1)
        remote = ray.remote(num_cpus=1, max_retries=0)(shard_lines)
        with RecordWriter(output) as writer:

            async def gather(part: list[Task]) -> None:
                generator = remote.remote(
                    config, part, concurrency=per_shard, judge=judge_function, host=host
                )
                try:
                    async for reference in generator:
                        for line in await reference:
                            writer.write(line)
                            record = RunRecord.from_json(line)
                            summary.add(record, judge_broke=_judge_broke(record))
                            if progress is not None:
                                progress.finished_one(record, summary)
                except ray.exceptions.RayError as exc:
                    raise _shard_failure(exc) from exc
                except BaseException:
                    ray.cancel(generator, force=True)
                    raise

            try:
                async with anyio.create_task_group() as group:
                    for part in parts:
                        group.start_soon(gather, part)
            except BaseExceptionGroup as group:
                summary.interrupted = True
                # Shards failing alike (a tool that does not import on the workers) are one
                # error to the operator, not a group of them.
                failures = [e for e in _leaves(group) if isinstance(e, LlamaAgentError)]
                if failures:
                    raise failures[0] from None
                raise
            except BaseException:
                summary.interrupted = True
                raise
            finally:
                summary.wall = time.perf_counter() - clock
    finally:
        if started_ray:
            ray.shutdown()
    return summary


def _shard_failure(exc: BaseException) -> LlamaAgentError:
    """The error to show for a shard that failed: the worker's own when it is one of ours (a
    config problem the driver could not see), else a `RunError` saying what to do."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, LlamaAgentError):
        return cause
    what = (str(cause or exc).strip().splitlines() or [type(exc).__name__])[-1]
    return RunError(
        f"a Ray shard failed ({what}); the records written so far are kept: run the same "
        "command again to resume"
    )


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def _shippable(ray: Any, judge: Judge) -> Judge:
    """`judge`, its module marked to be pickled by value when it is a file of the current folder
    (the workers' folder is not ours); an installed module travels by name as usual."""
    module = sys.modules.get(getattr(judge, "__module__", "") or "")
    where = getattr(module, "__file__", None)
    if module is not None and where and Path(where).resolve().is_relative_to(Path.cwd()):
        ray.cloudpickle.register_pickle_by_value(module)
    return judge


def _judge_broke(record: RunRecord) -> bool:
    # The driver has only the line: a verdict whose reason says the judge broke.
    return record.check is not None and judge_broke(record.check)
