"""Batch runs: an agent over a file of tasks, resumable, sharded, on one machine or on Ray.

```python
tasks = read_tasks("tasks.jsonl")
async with load_agent("config.yaml") as agent:
    summary = await run_batch(agent, tasks, "runs.jsonl", concurrency=64)
```

Each finished run is one line of the output (`RunRecord`), appended with one `write()`, so a
crash loses only the runs in flight and a rerun skips what is done (`resume`).

Modules: `_record` (`RunRecord`, one line of the output, and `Verdict`, a check's result),
`_tasks` (reading and checking the tasks file, `Shard`, `resume`), `_checks` (the
normalisation rule for `expected`, judges), `_runner` (`run_batch`: concurrent runs of one
agent, the writer, `BatchSummary`), `_ray` (`run_batch_on_ray`: shards as Ray tasks, with the
`ray` extra).
"""

from agent.batch._checks import (
    Judge,
    check_answer,
    load_judge,
    matches,
    normalise,
    run_judge,
)
from agent.batch._ray import ray_available, run_batch_on_ray
from agent.batch._record import RECORD_VERSION, RunRecord, TaskId, Verdict, render_settings
from agent.batch._runner import (
    BatchSummary,
    Progress,
    RecordWriter,
    drive,
    pending,
    run_batch,
    run_task,
)
from agent.batch._tasks import (
    Resumed,
    Shard,
    Task,
    id_key,
    parse_tasks,
    read_tasks,
    resume,
    shard_of,
)

__all__ = [
    "RECORD_VERSION",
    "BatchSummary",
    "Judge",
    "Progress",
    "RecordWriter",
    "Resumed",
    "RunRecord",
    "Shard",
    "Task",
    "TaskId",
    "Verdict",
    "check_answer",
    "drive",
    "id_key",
    "load_judge",
    "matches",
    "normalise",
    "parse_tasks",
    "pending",
    "ray_available",
    "read_tasks",
    "render_settings",
    "resume",
    "run_batch",
    "run_batch_on_ray",
    "run_judge",
    "run_task",
    "shard_of",
]
