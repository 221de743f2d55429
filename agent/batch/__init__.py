"""Batch runs: an agent over a file of tasks, resumable and sharded, and their run records.

Modules: `_record` (`RunRecord`, one line of the output file, and `Verdict`, a check's result),
`_export` (run records as fine-tuning data: `export_runs`, `replay`, the two formats) and
`_card` (the export's dataset card).
"""

from agent.batch._card import dataset_card, default_card_path, write_card
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
from agent.batch._record import RECORD_VERSION, RunRecord, TaskId, Verdict, render_settings

__all__ = [
    "IGNORE_INDEX",
    "RECORD_VERSION",
    "ExportFormat",
    "ExportReport",
    "Replay",
    "RunRecord",
    "TaskId",
    "Verdict",
    "dataset_card",
    "default_card_path",
    "export_runs",
    "messages_example",
    "native_example",
    "normalize_task",
    "render_settings",
    "replay",
    "tokenize_spans",
    "write_card",
]
