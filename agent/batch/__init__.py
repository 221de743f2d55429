"""Batch runs: an agent over a file of tasks, resumable, sharded, on one machine or on Ray; and
their runs exported as fine-tuning data.

```python
tasks = read_tasks("tasks.jsonl")
async with load_agent("config.yaml") as agent:
    summary = await run_batch(agent, tasks, "runs.jsonl", concurrency=64)
report = export_runs(Path("runs.jsonl"), Path("train.jsonl"), only_passed=True)
```

Each finished run is one line of the output (`RunRecord`), appended with one `write()`, so a
crash loses only the runs in flight and a rerun skips what is done (`resume`).

Modules: `_record` (`RunRecord`, one line of the output, and `Verdict`, a check's result),
`_tasks` (reading and checking the tasks file, `Shard`, `resume`), `_checks` (the
normalisation rule for `expected`, judges), `_runner` (`run_batch`: concurrent runs of one
agent, the writer, `BatchSummary`), `_ray` (`run_batch_on_ray`: shards as Ray tasks, with the
`ray` extra), `_export` (run records as fine-tuning data: `export_runs`, `replay`, the native
and messages formats) and `_card` (the export's dataset card).
"""

from agent.batch._card import dataset_card, default_card_path, write_card
from agent.batch._checks import (
    Judge,
    check_answer,
    load_judge,
    matches,
    normalise,
    run_judge,
)
from agent.batch._export import (
    IGNORE_INDEX,
    ExportFormat,
    ExportReport,
    Replay,
    export_runs,
    messages_example,
    native_example,
    normalize_task,
    replay,
    tokenize_spans,
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
    "IGNORE_INDEX",
    "RECORD_VERSION",
    "BatchSummary",
    "ExportFormat",
    "ExportReport",
    "Judge",
    "Progress",
    "RecordWriter",
    "Replay",
    "Resumed",
    "RunRecord",
    "Shard",
    "Task",
    "TaskId",
    "Verdict",
    "check_answer",
    "dataset_card",
    "default_card_path",
    "drive",
    "export_runs",
    "id_key",
    "load_judge",
    "matches",
    "messages_example",
    "native_example",
    "normalise",
    "normalize_task",
    "parse_tasks",
    "pending",
    "ray_available",
    "read_tasks",
    "render_settings",
    "replay",
    "resume",
    "run_batch",
    "run_batch_on_ray",
    "run_judge",
    "run_task",
    "shard_of",
    "tokenize_spans",
    "write_card",
]
